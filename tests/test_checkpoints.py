"""The shipped checkpoints load offline and still do what their READMEs say."""

from pathlib import Path

import pytest
import torch

from inverse_detr import load_inverter
from inverse_detr.cli.evaluate import evaluate
from inverse_detr.config import load_config

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
# the classic detectors shipped in checkpoints/, each re-measured against its README's bars
CLASSIC = ("shapes-retinanet", "shapes-fcos", "shapes-faster-rcnn", "shapes-mask-rcnn")
MB = 1024 * 1024
DEEP = ("shapes-detr-6x6", "shapes-inverse-6x6")  # the 6 + 6-layer DETR and its chain


def test_every_shipped_checkpoint_is_re_measured_and_the_folder_fits_its_budget():
    shipped = {p.name for p in CHECKPOINTS.iterdir() if p.is_dir()}
    assert shipped == {"shapes-detr", "shapes-inverse", *DEEP, *CLASSIC}
    total = sum(f.stat().st_size for f in CHECKPOINTS.rglob("*") if f.is_file())
    assert total <= 48 * MB  # the working tree must stay copyable to a GPU machine
    for name in CLASSIC:
        assert (CHECKPOINTS / name / "model.safetensors").stat().st_size <= 4 * MB, name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shapes-detr", "shapes-detr-6x6"])
def test_shipped_detector_reaches_its_stated_ap(name):
    """Re-measured from the stored fp16 weights on the default (planted) world's val split."""
    cfg = load_config([f"model=checkpoints/{name}", "data.num_workers=0"])
    result, names = evaluate(cfg)
    assert result.box.ap50 >= 0.85 and result.box.ap >= 0.5  # checkpoints/<name>/README.md
    assert set(names.values()) >= {"circle", "square", "triangle", "star", "ring", "cross"}
    assert set(result.by_size) == {"small", "medium", "large"}


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIC)
def test_shipped_classic_detector_reaches_its_stated_ap(name):
    """Box AP50 ≥ 0.9 and AP ≥ 0.6 from the stored fp16 weights; Mask R-CNN mask AP50 ≥ 0.85."""
    result, _ = evaluate(load_config([f"model=checkpoints/{name}", "data.num_workers=0"]))
    assert result.box.ap50 >= 0.9 and result.box.ap >= 0.6, result.summary()
    if name == "shapes-mask-rcnn":
        assert result.mask_ap50 >= 0.85, result.summary()
    else:
        assert result.mask_ap is None


@pytest.mark.slow
@pytest.mark.parametrize(("name", "layers"), [("shapes-inverse", 2), ("shapes-inverse-6x6", 6)])
def test_shipped_inverse_modules_beat_the_mean_image(shapes_val_images, name, layers):
    inverter = load_inverter(CHECKPOINTS / name)
    assert inverter.spec.stages == ("backbone", "encoder", "decoder", "head")
    assert inverter.detr.config.encoder_layers == inverter.detr.config.decoder_layers == layers
    images = shapes_val_images
    baseline = ((images - images.mean(0, keepdim=True)) ** 2).mean()
    for stage in ("backbone", "encoder"):
        recon = inverter.reconstruct(images, stage=stage)
        assert recon.shape == images.shape
        assert ((recon - images) ** 2).mean() < baseline, stage


@pytest.mark.slow
def test_shipped_chain_reconstructs_from_the_backbone_near_a_fifth_of_the_baseline():
    """Re-measured from the stored fp16 weights on the 200 val images the README's findings
    use: backbone image MSE 0.205 × the mean-image baseline's (checkpoints/shapes-inverse/
    README.md), held to ≤ 0.21 × against regressions; issue 19 asks for 0.2 ×."""
    from inverse_detr.analysis.setup import prepare
    from inverse_detr.analysis.stages import stage_analysis

    cfg = load_config(["analysis.images=200", "analysis.analyses=[stages]", "data.num_workers=0"])
    setup = prepare(cfg)
    result = stage_analysis(setup.inverter, setup.subset, ["backbone"], progress=False)
    assert result.images == 200
    assert result.scores["backbone"].mse <= 0.21 * result.baseline.mse, result.to_dict()


@pytest.fixture(scope="module")
def shapes_val_images() -> torch.Tensor:
    """(32, 3, 128, 128) RGB in [0, 1]: the first default shapes-world val images."""
    from inverse_detr.lit.datamodule import build_datamodule

    cfg = load_config(["data.num_workers=0", "data.max_val_images=32", "data.batch_size=32"])
    datamodule = build_datamodule(cfg.data, cfg.model.name)
    batch = next(iter(datamodule.val_dataloader()))
    return datamodule.transform.denormalize(batch.pixel_values)
