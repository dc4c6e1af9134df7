"""Detection errors: matching on hand-made boxes, in-mask error, crops, the analysis on a tiny
inverter, and `analyze analyses=[grayscale,errors]` end to end."""

import json
import math

import pytest
import torch

from inverse_detr.analysis.detection_errors import error_analysis, match_detections
from inverse_detr.analysis.objects import batch_objects, box_crops, in_mask_mse
from inverse_detr.analysis.subset import embed
from inverse_detr.cli.analyze import main
from inverse_detr.export import export_inverter

OBJECTS = torch.tensor(
    [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]], dtype=torch.float
)
OBJECT_LABELS = torch.tensor([1, 2, 1, 3])


def detections(*rows):
    """rows of (x0, y0, x1, y1, score, label) → boxes, scores, labels."""
    table = torch.tensor(rows, dtype=torch.float)
    return table[:, :4], table[:, 4], table[:, 5].long()


def test_matching_finds_detected_missed_and_false_positives():
    found = detections(
        (1, 0, 10, 10, 0.8, 1),  # a duplicate of object 0, listed first but scored lower
        (0, 0, 10, 10, 0.9, 1),  # object 0: detected
        (20, 20, 30, 30, 0.7, 1),  # the wrong class over object 1: false positive, 1 missed
        (45, 40, 55, 50, 0.95, 1),  # the right class, IoU 1/3 with object 2: too little
        (60, 60, 70, 70, 0.3, 3),  # object 3, below the score threshold: dropped
        (80, 80, 90, 90, 0.6, 2),  # nothing there: false positive
    )
    matching = match_detections(*found, OBJECTS, OBJECT_LABELS)
    assert matching.object_match.tolist() == [1, -1, -1, -1]
    assert matching.missed.tolist() == [False, True, True, True]
    assert sorted(matching.false_positives.tolist()) == [0, 2, 3, 5]
    # a lower threshold keeps the detection of object 3
    lower = match_detections(*found, OBJECTS, OBJECT_LABELS, score_threshold=0.2)
    assert lower.object_match.tolist() == [1, -1, -1, 4]
    # with a looser IoU the offset detection takes object 2
    loose = match_detections(*found, OBJECTS, OBJECT_LABELS, iou_threshold=0.3)
    assert loose.object_match.tolist() == [1, -1, 3, -1]


def test_each_detection_takes_the_free_object_of_highest_iou():
    objects = torch.tensor([[0, 0, 10, 10], [2, 0, 12, 10]], dtype=torch.float)
    found = detections((2, 0, 12, 10, 0.9, 1), (0, 0, 11, 10, 0.8, 1))
    matching = match_detections(*found, objects, torch.tensor([1, 1]))
    # the first takes object 1 (IoU 1); the second the one left (object 0), not a duplicate
    assert matching.object_match.tolist() == [1, 0] and len(matching.false_positives) == 0


def test_matching_without_detections_or_objects():
    none = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    assert match_detections(*none, OBJECTS, OBJECT_LABELS).missed.all()
    found = detections((0, 0, 10, 10, 0.9, 1))
    empty = match_detections(*found, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty.false_positives.tolist() == [0] and len(empty.object_match) == 0


def test_in_mask_error_reads_the_mask_only():
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = masks[1, 4:, :] = masks[2, 2:6, 2:6] = True
    owners = torch.tensor([0, 0, 1])
    recon = images.clone()
    outside = ~masks[:2].any(0)  # image 0: wrong everywhere outside its two masks
    recon[0][:, outside] += 0.7
    recon[1][:, ~masks[2]] -= 0.5
    assert in_mask_mse(recon, images, masks, owners).tolist() == [0.0, 0.0, 0.0]
    recon[1][:, masks[2]] += 0.1  # now wrong by 0.1 inside object 2 only
    errors = in_mask_mse(recon, images, masks, owners)
    assert errors[:2].tolist() == [0.0, 0.0] and errors[2].item() == pytest.approx(0.01)
    empty = in_mask_mse(recon, images, torch.zeros(1, 8, 8, dtype=torch.bool), owners[:1])
    assert math.isnan(empty.item())


def test_box_crops_are_square_and_show_the_box():
    images = torch.zeros(2, 3, 32, 32)
    images[1, 0, 8:16, 8:24] = 1.0  # a red 8×16 bar in image 1
    crops = box_crops(images, torch.tensor([1]), torch.tensor([[8.0, 8.0, 24.0, 16.0]]), 20)
    assert crops.shape == (1, 3, 20, 20)
    # widened to 16×16 around the bar: its middle rows are red, the top and bottom are not
    assert crops[0, 0, 10].min() > 0.99 and crops[0, 0, 0].max() < 0.01
    corner = box_crops(images, torch.tensor([0]), torch.tensor([[28.0, 28.0, 40.0, 40.0]]), 8)
    assert corner.shape == (1, 3, 8, 8)  # clipped to the image, still a square


def test_error_analysis_counts_every_object_and_detection(tiny_inverter, val_images):
    objects = sum(len(t.labels) for t in val_images.targets)
    queries = tiny_inverter.detr.config.num_queries
    every = error_analysis(tiny_inverter, val_images, 0.0, batch_size=4, progress=False)
    assert every.stages == ["backbone", "encoder", "decoder", "head", "head_soft"]
    assert every.detected + every.missed == objects
    assert every.detected + every.false_positives == queries * len(val_images)
    assert every.examples["input"].shape == (6, 3, 48, 48)
    assert set(every.examples) == {"input", "decoder reconstruction"}
    json.dumps(every.to_dict())


def test_error_analysis_scores_missed_objects_inside_their_masks(tiny_inverter, val_images):
    result = error_analysis(tiny_inverter, val_images, 1.01, batch_size=4, progress=False)
    objects = sum(len(t.labels) for t in val_images.targets)
    assert (result.detected, result.missed, result.false_positives) == (0, objects, 0)
    assert result.false_positive_score is None and result.examples == {}
    assert result.vanishing is None  # no detected object to compare with
    assert result.decoder_over_encoder["missed"] == pytest.approx(
        result.in_mask_mse["decoder"]["missed"] / result.in_mask_mse["encoder"]["missed"]
    )
    assert set(result.missed_examples) == {"input", *result.stages}
    # the same number by hand: the backbone's reconstruction inside every object's mask
    images = val_images.images
    emb = embed(tiny_inverter, images, val_images.pixel_mask)
    recon = tiny_inverter.chain.reconstruct(emb, "backbone")
    owners, masks, _ = batch_objects(val_images.targets)
    expected = in_mask_mse(recon, images, masks, owners).nanmean().item()
    assert result.in_mask_mse["backbone"]["missed"] == pytest.approx(expected, rel=1e-5)
    assert result.in_mask_mse["backbone"]["detected"] is None


@pytest.fixture
def tiny_export(tmp_path, tiny_inverter, tiny_detr_dir):
    inv = tiny_inverter
    out = tmp_path / "tiny-run" / "export"
    return export_inverter(inv.chain, inv.spec, inv.transform, str(tiny_detr_dir), out)


def test_analyze_runs_grayscale_and_errors(tiny_export, tiny_overrides, tmp_path, capsys):
    data = [o for o in tiny_overrides if o.startswith(("data.", "out_dir"))]
    out = tmp_path / "report"
    args = [f"ckpt={tiny_export}", "analyses=[grayscale,errors]", "analysis.images=4"]
    assert main([*args, f"analysis.out={out}", *data]) == 0
    figures = {p.name for p in out.glob("*.png")}
    grayscale = {
        f"grayscale_{n}.png" for n in ("mse", "hue", "saturation", "ap", "reconstructions")
    }
    assert figures >= grayscale | {"errors_in_mask.png"}
    assert not figures & {"stage_mse.png", "color_hue.png"}  # only the named analyses ran
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"grayscale", "errors"}
    # the command read the prototypes from the train split (the shapes world's metadata)
    first = next(iter(metrics["grayscale"]["categories"]["input"].values()))
    assert first["prototype"] is not None
    assert metrics["grayscale"]["hue_to_prototype"]["input"] is not None
    assert metrics["errors"]["images"] == 4 and metrics["errors"]["score_threshold"] == 0.5
    page = (out / "report.html").read_text()
    assert "Grayscale input" in page and "Detection errors" in page
    assert page.count("data:image/png;base64,") == len(figures)
    said = capsys.readouterr().out
    assert "analysis/decoder/gray_mse_to_gray" in said and "analysis/errors/missed" in said


def test_the_config_accepts_the_same_extra_analyses():
    from inverse_detr.analysis.suite import EXTRA_ANALYSES
    from inverse_detr.config import load_config
    from inverse_detr.config.checks import EXTRA_ANALYSES as CONFIG_EXTRA

    assert CONFIG_EXTRA == EXTRA_ANALYSES
    cfg = load_config(["analyses=[grayscale,errors]", "analysis.callback_analyses=[errors]"])
    assert list(cfg.analysis.analyses) == ["grayscale", "errors"]
