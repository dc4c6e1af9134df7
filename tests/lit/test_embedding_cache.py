"""trainer.embedding_cache: stored targets give the losses the frozen forward gives, the key
empties a disk store, random input refuses, a resumed run reads its cache."""

from __future__ import annotations

import pytest
import torch

from inverse_detr.config import ConfigError, load_config
from inverse_detr.data.batch import Batch
from inverse_detr.data.coco import Target
from inverse_detr.data.shards import FixedShardSampler
from inverse_detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from inverse_detr.detectors.detr import load_detr
from inverse_detr.inverse.cache import DiskStore, needed_fields, weights_hash
from inverse_detr.inverse.chain import STAGES
from inverse_detr.inverse.spec import build_chain
from inverse_detr.lit import cache as cache_module
from inverse_detr.lit.cache import EmbeddingCache, cache_wanted
from inverse_detr.lit.inversion import InversionModule
from inverse_detr.lit.run import run

SIZE = (64, 64)


def target(image_id: int) -> Target:
    empty = torch.zeros(0, 4)
    masks = torch.zeros(0, *SIZE, dtype=torch.bool)
    labels = torch.zeros(0, dtype=torch.long)
    return Target(labels, empty, masks, image_id, SIZE, SIZE)


def batch_of(ids: list[int], seed: int = 0) -> Batch:
    """Images drawn from their ids: the same id is the same image."""
    pixels = [torch.randn(3, *SIZE, generator=torch.Generator().manual_seed(i)) for i in ids]
    mask = torch.ones(len(ids), *SIZE, dtype=torch.long)
    return Batch(torch.stack(pixels), mask, [target(i) for i in ids])


def new_cache(mode: str, tmp_path, dtype: str = "float32", data_key: str = "d") -> EmbeddingCache:
    return EmbeddingCache(mode, tmp_path / "cache", 1e9, dtype, data_key, SIZE)


@pytest.fixture
def module(tiny_detr_dir, tiny_spec):
    def build(cache=None, stages=STAGES) -> InversionModule:
        detr = load_detr(tiny_detr_dir)
        torch.manual_seed(0)
        chain = build_chain(tiny_spec(detr, stages))
        return InversionModule(detr, chain, IMAGENET_MEAN, IMAGENET_STD, cache=cache).train()

    return build


def losses(module: InversionModule, batch: Batch) -> dict[str, torch.Tensor]:
    return module.stage_losses(module.embed(batch, "train"), batch)


@pytest.mark.parametrize("mode", ["ram", "disk"])
def test_fp32_cached_losses_are_bit_equal_to_the_frozen_forward(module, mode, tmp_path):
    batch = batch_of([1, 2, 3])
    plain = losses(module(), batch)
    cached = module(new_cache(mode, tmp_path))
    cached.cache.open(cached.detr, cached.stages, {"train": [1, 2, 3, 4]}, rank=0)
    filling, reading = losses(cached, batch), losses(cached, batch)
    assert cached.cache.splits["train"].store.hits == 3  # the second call read the store
    for stage in plain:
        assert torch.equal(plain[stage], filling[stage]), stage
        assert torch.equal(plain[stage], reading[stage]), stage


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_storage_stays_within_its_stated_tolerance(module, dtype, tmp_path):
    """README "Speed" states these bounds: fp16 1e-3, bf16 1e-2 relative error of a loss."""
    batch = batch_of([1, 2])
    plain = losses(module(), batch)
    cached = module(new_cache("ram", tmp_path, dtype))
    cached.cache.open(cached.detr, cached.stages, {"train": [1, 2]}, rank=0)
    losses(cached, batch)
    reading = losses(cached, batch)
    tolerance = {"float16": 1e-3, "bfloat16": 1e-2}[dtype]
    for stage, value in plain.items():
        assert torch.allclose(reading[stage], value, rtol=tolerance, atol=0), stage
    assert any(not torch.equal(reading[s], plain[s]) for s in plain)  # it did round


def test_a_batch_with_an_unseen_image_runs_the_forward_and_stores_it(module, tmp_path):
    cached = module(new_cache("ram", tmp_path))
    cached.cache.open(cached.detr, cached.stages, {"train": [1, 2, 3]}, rank=0)
    losses(cached, batch_of([1, 2]))
    store = cached.cache.splits["train"].store
    losses(cached, batch_of([2, 3]))
    assert store.ids() == [1, 2, 3] and store.hits == 0
    losses(cached, batch_of([3, 1]))
    assert store.hits == 2


def test_only_the_fields_the_trained_stages_read_are_kept(module, tmp_path):
    assert needed_fields(["backbone"]) == ("backbone",)
    assert needed_fields(["decoder"]) == ("encoder", "decoder")
    assert needed_fields(["head"]) == ("decoder", "logits", "boxes")
    cached = module(new_cache("ram", tmp_path), stages=("decoder",))
    cached.cache.open(cached.detr, cached.stages, {"train": [1]}, rank=0)
    batch = batch_of([1])
    plain = module(stages=("decoder",)).stage_losses(module().embed(batch), batch)
    losses(cached, batch)
    assert torch.equal(losses(cached, batch)["decoder"], plain["decoder"])
    assert set(cached.cache.splits["train"].store.rows[1]) == {"encoder", "decoder"}


def open_disk(tmp_path, detr, data_key: str = "d") -> DiskStore:
    cache = new_cache("disk", tmp_path, data_key=data_key)
    cache.open(detr, STAGES, {"train": [5, 6]}, rank=0)
    return cache.splits["train"].store


def test_a_disk_cache_reopens_and_empties_itself_when_the_detr_or_data_change(
    tiny_detr_dir, tmp_path
):
    detr = load_detr(tiny_detr_dir)
    store = open_disk(tmp_path, detr)
    store.store([5, 6], cache_module._forward(detr, batch_of([5, 6])))
    store.flush()
    again = open_disk(tmp_path, detr)
    assert again.invalidated == "" and again.ids() == [5, 6]
    with torch.no_grad():
        detr.class_labels_classifier.bias[0] += 1.0
    changed = open_disk(tmp_path, detr)
    assert changed.invalidated == "detr" and changed.ids() == []
    assert open_disk(tmp_path, detr, data_key="other").invalidated == "data"


def test_an_unwritable_cache_folder_is_a_one_line_error(tiny_detr_dir, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ConfigError, match="embedding cache folder") as info:
        open_disk(tmp_path, load_detr(tiny_detr_dir))
    assert "\n" not in str(info.value)


def test_the_weights_hash_sees_one_changed_weight(tiny_detr_dir):
    detr = load_detr(tiny_detr_dir)
    before = weights_hash(detr)
    detr.model.backbone.to(memory_format=torch.channels_last)  # a layout is not an identity
    assert weights_hash(detr) == before
    with torch.no_grad():
        detr.model.input_projection.weight[0, 0, 0, 0] += 1e-3
    assert weights_hash(detr) != before


@pytest.mark.parametrize("mode", ["ram", "disk"])
def test_an_explicit_cache_refuses_random_augmentation_in_one_line(mode):
    with pytest.raises(ConfigError, match="deterministic input pipeline") as info:
        load_config([f"trainer.embedding_cache={mode}", "data.augment=hflip"])
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="needs mode=inversion"):
        load_config([f"trainer.embedding_cache={mode}", "experiment=joint"])


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        ([], True),  # the default run: 14 epochs of a frozen DETR
        (["data.augment=hflip"], False),
        (["trainer.max_epochs=1"], False),
        (["trainer.embedding_cache=off"], False),
        (["experiment=joint"], False),
        (["trainer.max_epochs=1", "trainer.embedding_cache=ram"], True),
    ],
)
def test_auto_caches_where_an_image_is_seen_again(args, wanted):
    assert cache_wanted(load_config(args))[0] is wanted


def test_fixed_shards_are_disjoint_cover_the_data_and_reshuffle_within(tmp_path):
    samplers = [FixedShardSampler(7, rank, 2, shuffle=True, seed=3) for rank in (0, 1)]
    shards = [set(s.shard()) for s in samplers]
    assert shards[0] | shards[1] == set(range(7)) and len(samplers[0]) == len(samplers[1]) == 4
    assert shards[0] == {0, 2, 4, 6} and set(iter(samplers[0])) == shards[0]
    orders = []
    for epoch in range(4):
        samplers[0].set_epoch(epoch)
        orders.append(list(samplers[0]))
    assert all(set(o) == shards[0] for o in orders) and len({tuple(o) for o in orders}) > 1


def test_a_resumed_run_reads_its_disk_cache_instead_of_the_detr(
    tiny_overrides, monkeypatch, tmp_path
):
    overrides = [o for o in tiny_overrides if not o.startswith("trainer.fast_dev_run")]
    overrides += ["trainer.embedding_cache=disk", "trainer.limit_val_batches=1"]
    calls = []
    forward = cache_module._forward
    monkeypatch.setattr(
        cache_module, "_forward", lambda d, b: calls.append(len(b)) or forward(d, b)
    )
    first = run(load_config([*overrides, "trainer.max_epochs=2"]))
    assert sum(calls) == 8 + 4  # every train image and the validated batch, once each
    calls.clear()
    run(load_config([*overrides, "trainer.max_epochs=3", "resume=last"]))
    assert calls == []
    folder = first.run_dir / "embedding_cache" / "train"
    assert (folder / "key.json").is_file() and (folder / "filled.npy").is_file()
