"""Comparing inverse chains: saturation, the deepest shared stage, scores by hand, and
`analyze analyses=[chains] analysis.compare=[...]` end to end."""

import json

import pytest
import torch

from inverse_detr.analysis.chains import common_stage, compare_chains, saturation
from inverse_detr.analysis.metrics import image_mse, masked_mean_image
from inverse_detr.analysis.subset import AnalysisError, embed
from inverse_detr.cli.analyze import main
from inverse_detr.config import ConfigError, load_config
from inverse_detr.export import Inverter, export_inverter
from inverse_detr.inverse.spec import build_chain


@pytest.fixture(scope="module")
def other_inverter(tiny_inverter) -> Inverter:
    """The same DETR, another (differently initialised) chain."""
    torch.manual_seed(1)
    chain = build_chain(tiny_inverter.spec).eval()
    return Inverter(tiny_inverter.detr, chain, tiny_inverter.spec, tiny_inverter.transform)


def test_saturation_is_zero_for_gray_and_one_for_pure_colours():
    gray = torch.full((1, 3, 4, 4), 0.4)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    mask = torch.ones(1, 4, 4, dtype=torch.long)
    torch.testing.assert_close(saturation(torch.cat([gray, red]), mask.repeat(2, 1, 1)),
                               torch.tensor([0.0, 1.0]))  # fmt: skip
    half = torch.cat([red[..., :2], gray[..., 2:]], dim=-1)  # red left half, gray right
    only_red = mask.clone()
    only_red[..., 2:] = 0
    torch.testing.assert_close(saturation(half, only_red), torch.tensor([1.0]))


def test_chains_are_scored_from_the_deepest_shared_stage(tiny_inverter, other_inverter, val_images):
    chains = {"a": tiny_inverter, "b": other_inverter}
    assert common_stage(chains) == "head"
    result = compare_chains(chains, val_images, "decoder", batch_size=3, progress=False)
    assert result.stage == "decoder" and result.images == len(val_images)
    images, mask = val_images.images, val_images.pixel_mask
    recon = other_inverter.chain.reconstruct(embed(other_inverter, images, mask), "decoder")
    mean = masked_mean_image(images, mask).expand_as(recon)
    scores = result.scores["b"]
    assert scores.mse_to_image == pytest.approx(image_mse(recon, images, mask).mean().item())
    assert scores.mse_to_mean == pytest.approx(image_mse(recon, mean, mask).mean().item())
    assert scores.saturation == pytest.approx(saturation(recon, mask).mean().item())
    assert result.scores["a"].mse_to_image != pytest.approx(scores.mse_to_image)
    assert result.input_saturation == pytest.approx(saturation(images, mask).mean().item())
    assert set(result.examples) == {"input", "a", "b", "mean image"}
    json.dumps(result.to_dict())
    with pytest.raises(AnalysisError, match="at least two"):
        compare_chains({"a": tiny_inverter}, val_images, progress=False)


def test_analyze_compares_chains(tiny_inverter, other_inverter, tiny_overrides, tmp_path, capsys):
    exports = []
    for name, inv in (("first", tiny_inverter), ("second", other_inverter)):
        out = tmp_path / name / "export"
        exports.append(export_inverter(inv.chain, inv.spec, inv.transform, "unused", out))
    data = [o for o in tiny_overrides if o.startswith(("data.", "out_dir"))]
    compare = f"analysis.compare=[{exports[1]},{exports[0]}]"  # the analysed one again too
    args = [f"ckpt={exports[0]}", "analyses=[chains]", compare]
    detr = str(tiny_inverter.detr.name_or_path)
    for export in exports:  # record the tiny DETR the chains were built for
        record = json.loads((export / "inverter.json").read_text())
        (export / "inverter.json").write_text(json.dumps(record | {"detr": detr}))
    out = tmp_path / "report"
    assert main([*args, "analysis.images=4", f"analysis.out={out}", *data]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["chains"]["chains"]) == {"first", "second", "first (2)"}
    assert (out / "chains_reconstructions.png").stat().st_size > 1000
    assert "analysis/chains/second/mse_to_mean" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="analysis.compare"):
        load_config(["analyses=[chains]"])
