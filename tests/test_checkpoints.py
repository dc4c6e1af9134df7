"""The shipped checkpoints load offline and still do what their READMEs say."""

from pathlib import Path

import pytest
import torch

from inverse_detr import load_inverter
from inverse_detr.cli.evaluate import evaluate
from inverse_detr.config import load_config

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.mark.slow
def test_shipped_detector_reaches_its_stated_ap():
    cfg = load_config(["model=checkpoints/shapes-detr", "data=shapes", "data.num_workers=0"])
    result, names = evaluate(cfg)
    scores = result.box
    assert scores.ap50 >= 0.8 and scores.ap >= 0.45  # checkpoints/shapes-detr/README.md
    assert set(names.values()) >= {"circle", "square", "triangle", "star", "ring", "cross"}


@pytest.mark.slow
def test_shipped_planted_world_detector_reaches_its_stated_ap():
    """Re-measured from the stored fp16 weights (checkpoints/shapes-detr-planted/README.md)."""
    cfg = load_config(
        ["model=checkpoints/shapes-detr-planted", "data=shapes_planted", "data.num_workers=0"]
    )
    result, _ = evaluate(cfg)
    assert result.box.ap50 >= 0.85 and result.box.ap >= 0.5
    assert set(result.by_size) == {"small", "medium", "large"}


@pytest.mark.slow
def test_shipped_inverse_modules_beat_the_mean_image(shapes_val_images):
    inverter = load_inverter(CHECKPOINTS / "shapes-inverse")
    assert inverter.spec.stages == ("backbone", "encoder", "decoder", "head")
    images = shapes_val_images
    baseline = ((images - images.mean(0, keepdim=True)) ** 2).mean()
    for stage in ("backbone", "encoder"):
        recon = inverter.reconstruct(images, stage=stage)
        assert recon.shape == images.shape
        assert ((recon - images) ** 2).mean() < baseline, stage


@pytest.fixture(scope="module")
def shapes_val_images() -> torch.Tensor:
    """(32, 3, 128, 128) RGB in [0, 1]: the first default shapes-world val images."""
    from inverse_detr.lit.datamodule import build_datamodule

    cfg = load_config(["data.num_workers=0", "data.max_val_images=32", "data.batch_size=32"])
    datamodule = build_datamodule(cfg.data, cfg.model.name)
    batch = next(iter(datamodule.val_dataloader()))
    return datamodule.transform.denormalize(batch.pixel_values)
