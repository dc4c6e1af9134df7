"""Exported inverters: a pickle-free round trip, the recorded DETR, and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from inverse_detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD, DetrTransform
from inverse_detr.detectors.detr import forward_embeddings, load_detr, random_detr
from inverse_detr.export import InverterError, export_inverter, load_inverter
from inverse_detr.inverse.chain import STAGES, InverseChain
from inverse_detr.inverse.embeddings import ForwardEmbeddings
from inverse_detr.inverse.spec import ChainSpec, build_chain

SIZE = (64, 64)


@pytest.fixture(scope="module")
def detr(tiny_detr_dir):
    return load_detr(tiny_detr_dir)


@pytest.fixture(scope="module")
def spec(detr, tiny_spec) -> ChainSpec:
    return tiny_spec(detr)


@pytest.fixture(scope="module")
def chain(spec) -> InverseChain:
    torch.manual_seed(0)
    chain = build_chain(spec)
    # move BatchNorm running statistics off their defaults, so that buffers must round-trip too
    with torch.no_grad():
        chain.train().backbone(torch.randn(2, 16, spec.d_model) * 3 + 1, (4, 4))
    return chain.eval()


def export(chain, spec, detr_name, out: Path, mode: str = "fixed") -> Path:
    return export_inverter(chain, spec, DetrTransform(SIZE, mode), detr_name, out)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, chain, spec, tiny_detr_dir) -> Path:
    return export(chain, spec, str(tiny_detr_dir), tmp_path_factory.mktemp("run") / "export")


@pytest.fixture
def copy(exported, tmp_path) -> Path:
    """A private copy of the export, for tests that damage it."""
    return Path(shutil.copytree(exported, tmp_path / "export"))


def images(size=SIZE, seed: int = 1) -> torch.Tensor:
    return torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(seed))


def normalised(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def test_round_trip_reconstructs_like_the_original(exported, chain, detr):
    inverter = load_inverter(exported)
    x = images()
    with torch.no_grad():
        emb = forward_embeddings(detr, normalised(x), torch.ones(2, *SIZE, dtype=torch.long))
        for stage in STAGES:
            expected = chain.reconstruct(emb, stage)
            torch.testing.assert_close(inverter.chain.reconstruct(emb, stage), expected)
            torch.testing.assert_close(inverter.reconstruct(x, stage), expected)
    assert inverter.transform.image_size == SIZE
    assert not inverter.chain.training


def test_load_accepts_the_run_folder(exported, chain):
    inverter = load_inverter(exported.parent)
    for key, value in chain.state_dict().items():
        torch.testing.assert_close(inverter.chain.state_dict()[key], value)


@pytest.mark.parametrize("mode", ["fixed", "pad"])
def test_reconstruct_returns_the_input_size(tmp_path, chain, spec, tiny_detr_dir, mode):
    inverter = load_inverter(export(chain, spec, str(tiny_detr_dir), tmp_path, mode))
    x = images(size=(50, 70))
    for stage in ("backbone", "head"):
        out = inverter.reconstruct(x, stage)
        assert out.shape == (2, 3, 50, 70)
        assert out.min() >= 0 and out.max() <= 1
    emb = inverter.embed(x)
    assert isinstance(emb, ForwardEmbeddings)
    assert tuple(emb.image_size) == SIZE
    if mode == "pad":  # 50×70 fits as 46×64: the bottom token row is padding
        assert not emb.mask.all()


def test_export_holds_no_pickle(exported, monkeypatch):
    assert sorted(p.name for p in exported.iterdir()) == ["inverse.safetensors", "inverter.json"]

    def refuse(*args, **kwargs):
        raise AssertionError("load_inverter unpickled something")

    monkeypatch.setattr(torch, "load", refuse)
    load_inverter(exported)


def assert_one_line_error(err: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("changed", "name"), [({"d_model": 64}, "d_model"), ({"num_queries": 6}, "num_queries")]
)
def test_mismatched_detr_is_a_one_line_error(exported, changed, name):
    torch.manual_seed(0)
    settings = {"d_model": 32, "num_queries": 5, **changed}
    other = random_detr(
        d_model=settings["d_model"],
        encoder_layers=1,
        decoder_layers=1,
        attention_heads=2,
        ffn_dim=64,
        num_queries=settings["num_queries"],
        num_labels=91,
    )
    with pytest.raises(InverterError, match=name) as err:
        load_inverter(exported, detr=other)
    assert_one_line_error(err)


def test_corrupt_record_is_a_one_line_error(copy):
    (copy / "inverter.json").write_text("{not json")
    with pytest.raises(InverterError, match="inverter.json") as err:
        load_inverter(copy)
    assert_one_line_error(err)


def test_weights_of_the_wrong_shape_are_a_one_line_error(copy):
    state = load_file(str(copy / "inverse.safetensors"))
    key = next(k for k, v in state.items() if v.dim() == 2)
    state[key] = state[key].reshape(-1, 1).contiguous()
    save_file(state, str(copy / "inverse.safetensors"))
    with pytest.raises(InverterError, match="inverse.safetensors") as err:
        load_inverter(copy)
    assert_one_line_error(err)


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_unreadable_weights_are_a_one_line_error(copy, damage):
    weights = copy / "inverse.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(b"not safetensors")
    with pytest.raises(InverterError, match="inverse.safetensors") as err:
        load_inverter(copy)
    assert_one_line_error(err)


def test_folder_without_export_is_a_one_line_error(tmp_path):
    with pytest.raises(InverterError, match="inverter.json") as err:
        load_inverter(tmp_path)
    assert_one_line_error(err)


def test_recorded_relative_detr_resolves_inside_the_export(
    tmp_path, chain, spec, tiny_detr_dir, detr, monkeypatch
):
    out = export(chain, spec, "detr", tmp_path / "run" / "export")
    detr.save_pretrained(out / "detr")
    record = json.loads((out / "inverter.json").read_text())
    assert record["detr"] == "detr"
    monkeypatch.chdir(tmp_path)  # "detr" relative to the working directory does not exist
    inverter = load_inverter(tmp_path / "run")
    for key, value in detr.state_dict().items():
        torch.testing.assert_close(inverter.detr.state_dict()[key], value)
    assert [n for n, p in inverter.detr.named_parameters() if p.requires_grad] == []


def test_a_detr_given_relative_to_the_working_directory_loads_from_anywhere(
    chain, spec, tiny_detr_dir, tmp_path, monkeypatch
):
    shutil.copytree(tiny_detr_dir, tmp_path / "models" / "detr")
    monkeypatch.chdir(tmp_path)
    out = export(chain, spec, "models/detr", tmp_path / "run" / "export")
    recorded = json.loads((out / "inverter.json").read_text())["detr"]
    assert Path(recorded) == tmp_path.resolve() / "models" / "detr"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_inverter(out).reconstruct(images()).shape == (2, 3, *SIZE)


def test_repository_detectors_are_recorded_relative_to_the_repository(chain, spec, tmp_path):
    out = export(chain, spec, "checkpoints/shapes-detr", tmp_path / "export")
    assert json.loads((out / "inverter.json").read_text())["detr"] == "checkpoints/shapes-detr"


def test_ship_stores_the_chain_in_fp16_and_it_reconstructs_as_before(exported, tmp_path):
    from inverse_detr.cli.ship import ship

    target = ship(str(exported.parent), tmp_path / "shipped")  # the run folder holding export/
    stored = load_file(str(target / "inverse.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    full = (exported / "inverse.safetensors").stat().st_size
    assert (target / "inverse.safetensors").stat().st_size < 0.6 * full
    before, after = load_inverter(exported), load_inverter(target)
    assert next(after.chain.parameters()).dtype == torch.float32
    x = images()
    for stage in STAGES:
        torch.testing.assert_close(
            after.reconstruct(x, stage), before.reconstruct(x, stage), atol=2e-2, rtol=0
        )
