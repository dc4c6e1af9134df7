"""`python -m inverse_detr.invert_layout` on two layouts of the tiny shapes world."""

import json

import pytest
import torch

from inverse_detr.cli.invert_layout import main
from inverse_detr.config import load_config
from inverse_detr.data.shapes.classes import SHAPE_CLASSES
from inverse_detr.detectors.classic import ClassicDetector, ClassicSpec, build_classic
from inverse_detr.detectors.loading import save_detector
from inverse_detr.layout.optimize import InversionSettings
from inverse_detr.layout.settings import inversion_settings

DATA_KEYS = ("data.", "out_dir")


@pytest.fixture
def tiny_retinanet_dir(tmp_path):
    """A tiny random RetinaNet that knows the tiny shapes world's categories (ids 1-6)."""
    torch.manual_seed(0)
    categories = {i + 1: c.name for i, c in enumerate(SHAPE_CLASSES[:6])}
    spec = ClassicSpec("retinanet", categories, image_size=64)
    detector = ClassicDetector(build_classic(spec).eval(), spec)
    return save_detector(detector, tmp_path / "tiny-retinanet", fp16=False)


def test_cli_inverts_two_shapes_layouts_with_a_transfer_matrix(
    tiny_overrides, tiny_detr_dir, tiny_retinanet_dir, tmp_path, capsys
):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    out = tmp_path / "layout"
    args = [f"model={tiny_detr_dir}", *data, "n=2", "layout.iterations=3", f"layout.out={out}"]
    assert main([*args, f"layout.detectors=[{tiny_retinanet_dir}]", "--report"]) == 0
    printed = capsys.readouterr().out
    assert "2 layouts" in printed and "inverted with" in printed

    targets = json.loads((out / "targets.json").read_text())
    assert [i["id"] for i in targets["images"]] == [0, 1] and targets["annotations"]
    metrics = json.loads((out / "metrics.json").read_text())
    names = metrics["transfer"]["rows"]
    assert names == metrics["transfer"]["columns"] == [tiny_detr_dir.name, "tiny-retinanet"]
    assert metrics["settings"]["terms"] == "all"
    assert all(0 <= v <= 1 for row in metrics["transfer"]["ap50"] for v in row)
    assert metrics["n"] == 2 and metrics["settings"]["iterations"] == 3
    for name in names:
        assert sorted(p.name for p in (out / name / "images").iterdir()) == ["0000.png", "0001.png"]
        detections = json.loads((out / name / "detections.json").read_text())
        found = {d["image_id"] for d in detections}
        # DETR reports every query; the untrained RetinaNet little above its score threshold
        assert found == {0, 1} if name == tiny_detr_dir.name else found <= {0, 1}
        assert (out / name / "report.png").stat().st_size > 0
    assert (out / "transfer.png").stat().st_size > 0


def test_cli_bad_layout_file_is_one_line_exit_2(tiny_overrides, tiny_detr_dir, tmp_path, capsys):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    missing = tmp_path / "nope.json"
    assert main([f"model={tiny_detr_dir}", *data, f"layouts={missing}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: annotation file not found: {missing}"
    assert main(["model=random", *data]) == 2
    assert "needs a trained detector" in capsys.readouterr().err
    assert main([f"model={tiny_detr_dir}", *data, "n=1", "layout.loss=mask"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'layout.loss' is 'mask'" in err and "this detector gives cls, reg" in err


def test_cli_single_query_needs_a_detr(tiny_overrides, tiny_retinanet_dir, capsys):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    assert main([f"model={tiny_retinanet_dir}", *data, "layout.query=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "single-query visualisation needs a DETR today" in err


def test_cli_single_query_visualisation_writes_images_and_context(
    tiny_overrides, tiny_detr_dir, tmp_path, capsys
):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    out = tmp_path / "query"
    query = ["layout.query=1", "layout.seeds=2", "layout.iterations=2", f"layout.out={out}"]
    assert main([f"model={tiny_detr_dir}", *data, *query, "layout.categories=[3,5]"]) == 0
    assert "query 1 → class_3: found on" in capsys.readouterr().out
    context = json.loads((out / "query-1" / "context.json").read_text())
    assert set(context) == {"class_3", "class_5"}
    assert context["class_5"]["images"] == 2 and context["class_5"]["category"] == 5
    for name in context:
        assert sorted(p.name for p in (out / "query-1" / name).iterdir()) == [
            "0000.png",
            "0001.png",
        ]
    assert (out / "query-1" / "context.png").is_file() and (
        out / "query-1" / "images.png"
    ).is_file()
    # the tiny DETR names no class, so the categories must be given; queries are 0-4
    assert main([f"model={tiny_detr_dir}", *data, *query]) == 2
    assert "'layout.categories' has nothing" in capsys.readouterr().err
    assert main([f"model={tiny_detr_dir}", *data, "layout.query=7", "layout.categories=[1]"]) == 2
    assert "'layout.query' is 7; the detector's queries are 0-4" in capsys.readouterr().err


def test_config_defaults_are_the_optimisers_defaults():
    assert inversion_settings(load_config([]).layout, seed=0) == InversionSettings()
