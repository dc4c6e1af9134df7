"""Grad-CAM of one detection's class score and box coordinates, through pytorch-grad-cam.

The class map is plain Grad-CAM of the candidate's class evidence, the log-odds of its score
(`Detector.candidate_log_odds`; the log score's gradient shrinks with 1 − p, to ~10⁻⁴ of
it on confident detections):
ReLU(Σ_k w_k A_k) with w_k the spatial mean of its gradient on channel k of the layer's
activations A. A box coordinate can be pushed either way by what the layer sees, so its map
keeps the magnitude of the same weighted sum, |Σ_k w_k A_k|, instead of its positive part
(`SignFreeGradCAM`). The library upsamples each map to the image (bilinear) and scales it to
[0, 1]. When the weighted sum is below zero everywhere, the class map is all zero: Grad-CAM
finds no positive evidence at that layer (`metrics` counts such maps apart).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM

from inverse_detr.attribution.maps import AttributionMaps, AttributionSettings, restrict
from inverse_detr.attribution.targets import CandidateOutputs, OutputTarget, feature_layer
from inverse_detr.detectors.interface import Detector


class SignFreeGradCAM(GradCAM):
    """Grad-CAM keeping |Σ_k w_k A_k|: evidence that moves an output either way."""

    def get_cam_image(self, *args, **kwargs) -> np.ndarray:
        return np.abs(super().get_cam_image(*args, **kwargs))


def _cam(
    kind: type[GradCAM], model: CandidateOutputs, layer, images: torch.Tensor, targets: list
) -> torch.Tensor:
    """(B, H, W) maps of `kind` for images (B, 3, H, W), one target per image."""
    cam = kind(model=model, target_layers=[layer])
    cam.compute_input_gradient = True  # frozen detectors: the pixels carry the graph
    try:
        return torch.from_numpy(cam(input_tensor=images, targets=targets)).float()
    finally:
        cam.activations_and_grads.release()  # the hooks go, whatever happened


def gradcam_maps(
    detector: Detector,
    image: torch.Tensor,
    candidate: int,
    category: int,
    box: torch.Tensor,
    settings: AttributionSettings = AttributionSettings(),
) -> AttributionMaps:
    """Grad-CAM maps of candidate `candidate`'s log-odds for `category` and of its four box
    coordinates, on `image` (3, H, W) in [0, 1]; restricted to `box` (4,) xyxy pixels (the
    detection's) when `settings.restrict`. Layer: `settings.layer` (see `feature_layer`)."""
    layer = feature_layer(detector, settings.layer)
    device = next(detector.module.parameters()).device
    image = image.detach().to(device)[None]
    evidence = CandidateOutputs(detector, candidate, category, "class")
    cls = _cam(GradCAM, evidence, layer, image, [OutputTarget(0)])[0]
    boxes = CandidateOutputs(detector, candidate, category, "box")
    targets = [OutputTarget(i) for i in range(4)]  # the image four times, one coordinate each
    coords = _cam(SignFreeGradCAM, boxes, layer, image.repeat(4, 1, 1, 1), targets)
    return restrict(AttributionMaps("gradcam", cls, coords), box.cpu(), settings)
