"""One entry point for both methods: `explain(detector, image, detection, method, settings)`."""

from __future__ import annotations

import torch

from inverse_detr.attribution.gradcam import gradcam_maps
from inverse_detr.attribution.maps import AttributionMaps, AttributionSettings
from inverse_detr.attribution.occlusion import occlusion_maps
from inverse_detr.attribution.select import Detection
from inverse_detr.detectors.interface import Detector

METHODS = {"gradcam": gradcam_maps, "occlusion": occlusion_maps}


def methods_for(choice: str) -> list[str]:
    """`attribution.method` → the methods it runs: gradcam | occlusion | both."""
    if choice == "both":
        return list(METHODS)
    if choice not in METHODS:
        raise ValueError(
            f"unknown attribution method {choice!r}; allowed: gradcam, occlusion, both"
        )
    return [choice]


def explain(
    detector: Detector,
    image: torch.Tensor,
    detection: Detection,
    method: str,
    settings: AttributionSettings = AttributionSettings(),
) -> AttributionMaps:
    """`method`'s maps of one detection on `image` (3, H, W) in [0, 1]."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; allowed: {', '.join(METHODS)}")
    return METHODS[method](
        detector, image, detection.candidate, detection.category, detection.box, settings
    )
