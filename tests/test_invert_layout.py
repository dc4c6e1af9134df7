"""`python -m inverse_detr.invert_layout` on two layouts of the tiny shapes world."""

import json
from dataclasses import replace

import pytest
import torch

from inverse_detr.cli.invert_layout import main
from inverse_detr.config import load_config
from inverse_detr.data.shapes.classes import SHAPE_CLASSES
from inverse_detr.detectors.classic import ClassicDetector, ClassicSpec, build_classic
from inverse_detr.detectors.loading import save_detector
from inverse_detr.layout.settings import TUNED, inversion_settings

DATA_KEYS = ("data.", "out_dir")


def tiny_classic_dir(family: str, folder):
    """A tiny random `family` detector that knows the tiny shapes world's categories (1-6)."""
    torch.manual_seed(0)
    categories = {i + 1: c.name for i, c in enumerate(SHAPE_CLASSES[:6])}
    spec = ClassicSpec(family, categories, image_size=64)
    detector = ClassicDetector(build_classic(spec).eval(), spec)
    return save_detector(detector, folder, fp16=False)


@pytest.fixture
def tiny_retinanet_dir(tmp_path):
    return tiny_classic_dir("retinanet", tmp_path / "tiny-retinanet")


def test_cli_mask_rcnn_inverts_boxes_only_and_with_masks_and_reads_mask_ap(
    tiny_overrides, tmp_path, capsys
):
    """The paper's Table 1 rows and columns: Mask R-CNN boxes only / boxes + masks, mask AP."""
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    model = tiny_classic_dir("mask_rcnn", tmp_path / "tiny-mask")
    out = tmp_path / "layout"
    assert main([f"model={model}", *data, "n=2", "layout.iterations=2", f"layout.out={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["transfer"]["rows"] == ["tiny-mask.boxes", "tiny-mask"]
    assert metrics["transfer"]["columns"] == ["tiny-mask", "tiny-mask.mask"]
    terms = [
        metrics["inverted_with"][row]["settings"]["terms"]
        for row in ("tiny-mask.boxes", "tiny-mask")
    ]
    assert terms == ["cls+reg", "all"]
    assert all(0 <= v <= 1 for row in metrics["transfer"]["ap"] for v in row)
    assert "inverting with tiny-mask.boxes (loss terms: cls+reg)" in capsys.readouterr().out
    # the mask term alone: one row, driven by the layouts' masks
    out = tmp_path / "mask-only"
    args = [f"model={model}", *data, "n=2", "layout.iterations=2", "layout.loss=mask"]
    assert main([*args, f"layout.out={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["transfer"]["rows"] == ["tiny-mask"]
    assert metrics["inverted_with"]["tiny-mask"]["loss_first"] > 0


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
    rows = metrics["inverted_with"]
    assert [rows[name]["settings"]["terms"] for name in names] == ["all", "all"]
    assert all(0 <= v <= 1 for row in metrics["transfer"]["ap50"] for v in row)
    assert metrics["n"] == 2 and {rows[n]["settings"]["iterations"] for n in names} == {3}
    # each family its own tuned settings where the config leaves them unset
    assert rows["tiny-retinanet"]["settings"]["lr"] == TUNED["retinanet"].lr
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


def test_cli_single_candidate_visualisation_writes_images_and_context(
    tiny_overrides, tiny_detr_dir, tmp_path, capsys
):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    out = tmp_path / "query"
    query = ["layout.candidate=1", "layout.seeds=2", "layout.iterations=2", f"layout.out={out}"]
    assert main([f"model={tiny_detr_dir}", *data, *query, "layout.categories=[3,5]"]) == 0
    assert "candidate-1 → class_3: found on" in capsys.readouterr().out
    folder = out / "candidate-1"
    context = json.loads((folder / "context.json").read_text())
    assert set(context) == {"class_3", "class_5", "planted_rules"}
    assert context["class_5"]["images"] == 2 and context["class_5"]["category"] == 5
    for name in ("class_3", "class_5"):
        assert sorted(p.name for p in (folder / name).iterdir()) == ["0000.png", "0001.png"]
    assert (folder / "context.png").is_file() and (folder / "images.png").is_file()
    # the tiny DETR names no class, so the categories must be given; queries are 0-4
    assert main([f"model={tiny_detr_dir}", *data, *query]) == 2
    assert "'layout.categories' has nothing" in capsys.readouterr().err
    bad = ["layout.candidate=7", "layout.categories=[1]"]
    assert main([f"model={tiny_detr_dir}", *data, *bad]) == 2
    assert "'layout.candidate' is 7; detr's candidates are 0-4" in capsys.readouterr().err


def test_cli_scale_study_visualises_each_levels_centre_candidate(
    tiny_overrides, tiny_retinanet_dir, tmp_path, capsys
):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    out = tmp_path / "scale"
    args = [f"model={tiny_retinanet_dir}", *data, "layout.seeds=1", "layout.iterations=2"]
    args += ["layout.categories=[2]", f"layout.out={out}"]
    assert main([*args, "layout.level=all"]) == 0
    scale = json.loads((out / "scale.json").read_text())
    assert list(scale) == ["level-0", "level-1", "level-2"]
    assert set(scale["level-0"]) == {"square"} and 0 <= scale["level-0"]["square"]["found"] <= 1
    assert (out / "scale.png").is_file() and (out / "level-2" / "square" / "0000.png").is_file()
    capsys.readouterr()
    assert main([*args, "layout.level=5"]) == 2
    assert "'layout.level' is '5'; retinanet has levels 0, 1, 2 (or all)" in capsys.readouterr().err


def test_cli_texture_removal_reads_every_detector_before_and_after(
    tiny_overrides, tiny_retinanet_dir, tiny_detr_dir, tmp_path, capsys
):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    out = tmp_path / "texture"
    args = [f"model={tiny_retinanet_dir}", *data, "n=3", "layout.texture=true", f"layout.out={out}"]
    assert main([*args, f"layout.detectors=[{tiny_detr_dir}]"]) == 0
    record = json.loads((out / "texture.json").read_text())
    assert list(record) == ["tiny-retinanet", tiny_detr_dir.name]
    objects = sum(
        k["objects"] for kinds in record["tiny-retinanet"].values() for k in kinds.values()
    )
    assert objects > 0 and (out / "texture.png").is_file()
    assert "tiny-retinanet" in capsys.readouterr().out


@pytest.mark.parametrize("family", sorted(TUNED))
def test_config_defaults_are_each_familys_tuned_settings(family):
    layout = load_config([]).layout
    assert inversion_settings(layout, 3, family) == replace(TUNED[family], seed=3)


def test_a_config_value_overrides_every_familys_tuned_one():
    layout = load_config(["layout.lr=0.25", "layout.blur_decay=0.5", "layout.loss=cls"]).layout
    for family in TUNED:
        settings = inversion_settings(layout, 0, family)
        assert settings.lr == 0.25 and settings.blur.decay == 0.5 and settings.terms == "cls"
        assert settings.momentum == TUNED[family].momentum
