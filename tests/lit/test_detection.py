"""Detection mode: each classic detector trains through the same Lightning stack and its run
folder holds a detector that loads back behind the interface."""

from __future__ import annotations

import pytest

from inverse_detr.cli.train import main
from inverse_detr.detectors.classic import FAMILIES
from inverse_detr.detectors.loading import load_detector

MODULE_TINY = ["detector.fpn_channels=32"]  # FCOS's head has GroupNorm(32)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_detection_run_exports_a_loadable_detector(family, tiny_overrides, tmp_path):
    assert main([*tiny_overrides, f"experiment=shapes_{family}", *MODULE_TINY]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    detector = load_detector(run_dir / "detector")
    assert detector.name == family
    assert detector.categories == {
        1: "circle",
        2: "square",
        3: "triangle",
        4: "star",
        5: "ring",
        6: "cross",
    }
    metrics = (run_dir / "metrics.json").read_text()
    assert '"val/ap50"' in metrics
    assert ('"val/mask_ap"' in metrics) == (family == "mask_rcnn")
