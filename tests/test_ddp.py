"""Lightning DDP on 2 CPU processes (gloo): the multi-GPU path, testable without GPUs."""

import pytest
import torch
from ddp_probe import run_probe

from inverse_detr.config import load_config
from inverse_detr.lit.run import run

MODES = {
    "inversion": ([], ("val/loss", "val/encoder/mse", "val/backbone/image_mse")),
    # λ = 0 leaves the inverse chain without gradient: DDP must not wait for it
    "joint-lambda-0": (["experiment=joint", "joint.lambda=0"], ("val/ap", "val/rec_mse")),
    # from a trained export (which holds an inverse head that joint mode never trains)
    "joint-init-inverse": (
        ["experiment=joint", "joint.lambda=0.5", "joint.init_inverse={export}"],
        ("val/ap", "val/rec_mse"),
    ),
}


def two_ranks(tmp_path, overrides: list[str]) -> list[dict]:
    """Train on 2 gloo ranks through ddp_probe.py; each rank's saved state."""
    ranks = run_probe(tmp_path, overrides)
    assert len(ranks) == 2
    return ranks


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_two_ranks_end_with_identical_weights_and_reduced_metrics(mode, tiny_overrides, tmp_path):
    extra, keys = MODES[mode]
    if any("{export}" in arg for arg in extra):
        export = run(load_config([*tiny_overrides, "run_name=export"])).run_dir / "export"
        extra = [arg.format(export=export) for arg in extra]
    overrides = [*extra, *(o for o in tiny_overrides if not o.startswith("trainer.fast_dev_run"))]
    overrides += [
        "trainer=ddp_cpu",
        "trainer.max_steps=3",
        "trainer.max_epochs=3",
        "trainer.limit_val_batches=1",
    ]
    ranks = two_ranks(tmp_path, overrides)
    assert ranks[0]["steps"] == ranks[1]["steps"] == 3
    for key, value in ranks[0]["state"].items():
        torch.testing.assert_close(value, ranks[1]["state"][key], msg=key)
    # each rank validated different images; sync_dist makes every rank report the mean
    for key in keys:
        assert ranks[0]["metrics"][key] == pytest.approx(ranks[1]["metrics"][key], rel=1e-6)


@pytest.mark.slow
def test_each_rank_caches_its_own_shard_and_reads_it_in_later_epochs(tiny_overrides, tmp_path):
    """8 training images, batch 4, 2 ranks: a step per epoch; epochs 2 and 3 read the cache."""
    overrides = [o for o in tiny_overrides if not o.startswith("trainer.fast_dev_run")]
    overrides += ["trainer=ddp_cpu", "trainer.max_epochs=3", "trainer.embedding_cache=ram"]
    ranks = two_ranks(tmp_path, overrides)
    assert ranks[0]["steps"] == ranks[1]["steps"] == 3
    for key, value in ranks[0]["state"].items():
        torch.testing.assert_close(value, ranks[1]["state"][key], msg=key)
    shards = [set(r["cached"]["train"][0]) for r in ranks]
    assert len(shards[0]) == len(shards[1]) == 4 and not shards[0] & shards[1]
    assert [r["cached"]["train"][1] for r in ranks] == [8, 8]  # epochs 2 and 3 read 4 each
