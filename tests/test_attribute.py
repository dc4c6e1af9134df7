"""`python -m inverse_detr.attribute` on two shipped detectors, quick: two detections of a
small planted world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inverse_detr.cli.attribute import main

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SHARES = ("cls_boundary", "cls_interior", "box_boundary", "box_interior", "top_iou")


def quick(shapes_cache, out: Path) -> list[str]:
    """Four val images of the default (planted, 128 px) world, on the CPU."""
    return [
        f"data.cache_dir={shapes_cache}",
        "data.shapes.train=4",
        "data.shapes.val=4",
        "trainer=cpu",
        f"attribution.out={out}",
    ]


@pytest.mark.parametrize("name", ["shapes-detr", "shapes-mask-rcnn"])
def test_cli_explains_two_detections_of_a_shipped_detector(name, shapes_cache, tmp_path, capsys):
    out = tmp_path / "attribution"
    args = [f"model={CHECKPOINTS / name}", "n=2", "attribution.window=16", "attribution.stride=8"]
    assert main([*args, *quick(shapes_cache, out)]) == 0
    assert "2 detections explained" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["detections"] == 2 and metrics["layer"].endswith(("layer3", "layer4"))
    assert [r["method"] for r in metrics["rows"]] == ["gradcam", "occlusion"] * 2
    for row in metrics["rows"]:
        assert row["score"] >= 0.5 and row["category"] in range(1, 7)
        for key in SHARES:
            assert row[key] is None or 0 <= row[key] <= 1, (key, row)
        shares = [row[k] for k in SHARES[:4] if row[k] is not None]
        assert sum(shares) <= 2 + 1e-6
    summary = metrics["summary"]
    assert set(summary) == {"gradcam", "occlusion"}
    assert all(summary[m]["all"]["n"] == 2 for m in summary)
    assert len(list((out / "figures").glob("*.png"))) == 2
    assert (out / "shares.png").stat().st_size > 0
    page = (out / "report.html").read_text()
    assert "Boundary vs interior" in page and page.count("<img") == 3


def test_cli_logs_a_wandb_table_offline(shapes_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "attribution"
    args = [f"model={CHECKPOINTS / 'shapes-fcos'}", "n=1", "method=gradcam", "logger=wandb"]
    assert main([*args, *quick(shapes_cache, out)]) == 0
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["summary"]) == {"gradcam"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("attribution.layer=nope", "config key 'attribution.layer' is 'nope'"),
        ("method=rise", "config key 'attribution.method' is 'rise'"),
        ("n=0", "config key 'attribution.n' must be ≥ 1"),
    ],
)
def test_bad_settings_are_one_error_line(override, message, shapes_cache, tmp_path, capsys):
    args = [f"model={CHECKPOINTS / 'shapes-retinanet'}", override]
    assert main([*args, *quick(shapes_cache, tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
