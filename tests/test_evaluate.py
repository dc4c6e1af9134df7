"""`python -m inverse_detr.evaluate` on a tiny DETR and the tiny shapes world."""

import json

import pytest

from inverse_detr.cli.evaluate import main

DATA_KEYS = ("data.", "out_dir")


def test_evaluate_prints_ap_and_per_category_ap(tiny_overrides, tiny_detr_dir, capsys):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    assert main([f"model={tiny_detr_dir}", *data]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("AP ") and "AP50" in out[0] and "AP75" in out[0]
    scores = json.loads(out[-1])
    assert set(scores) == {"ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"}
    assert 0 <= scores["ap"] <= 1
    # the per-category lines name the shapes world's categories
    assert any("circle" in line or "square" in line for line in out[1:-1])


def test_evaluate_unloadable_model_is_exit_2(tiny_overrides, capsys):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    assert main(["model=./no/such/dir", *data]) == 2
    assert "detector not found: ./no/such/dir" in capsys.readouterr().err


def test_evaluate_takes_any_detector_directory(tiny_overrides, tmp_path, capsys):
    import torch

    from inverse_detr.detectors.classic import ClassicDetector, ClassicSpec, build_classic
    from inverse_detr.detectors.loading import save_detector

    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    names = {1: "circle", 2: "square", 3: "triangle", 4: "star", 5: "ring", 6: "cross"}
    torch.manual_seed(0)
    spec = ClassicSpec("mask_rcnn", names, image_size=64)
    folder = save_detector(ClassicDetector(build_classic(spec), spec), tmp_path / "mask")
    assert main([f"model={folder}", *data]) == 0
    scores = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {"ap", "ap_small", "mask_ap", "mask_ap50"} <= set(scores)


def test_ap_per_size_bucket_follows_the_data_buckets():
    import torch

    from inverse_detr.analysis.evaluation import SizeBuckets
    from inverse_detr.analysis.metrics import detection_targets
    from inverse_detr.data.coco import Target
    from inverse_detr.detectors.interface import Prediction

    # one small (4×4) and one large (20×20) object on a 32 px canvas; boxes normalised cxcywh
    boxes = torch.tensor([[4 / 32, 4 / 32, 4 / 32, 4 / 32], [20 / 32, 20 / 32, 20 / 32, 20 / 32]])
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 10:30, 10:30] = True
    target = Target(torch.tensor([1, 2]), boxes, masks, 1, (32, 32), (32, 32))
    buckets = {"small": (0.0, 50.0), "large": (50.0, 1e10)}
    only_large = Prediction(
        torch.tensor([[10.0, 10.0, 30.0, 30.0]]), torch.tensor([0.9]), torch.tensor([2])
    )
    sizes = SizeBuckets(buckets)
    sizes.update([only_large], [target], detection_targets([target]))
    result = sizes.compute()
    assert result["large"] == pytest.approx(1.0) and result["small"] == 0.0


def test_a_detector_for_other_categories_is_a_one_line_error(tiny_overrides, tmp_path, capsys):
    from inverse_detr.detectors.classic import ClassicDetector, ClassicSpec, build_classic
    from inverse_detr.detectors.loading import save_detector

    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    spec = ClassicSpec("retinanet", {1: "circle", 2: "square"}, image_size=64)
    folder = save_detector(ClassicDetector(build_classic(spec), spec), tmp_path / "two")
    assert main([f"model={folder}", *data]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "knows categories [1, 2]" in err and "[3, 4, 5, 6]" in err
