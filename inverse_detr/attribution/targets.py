"""One candidate's outputs as a module, and the targets pytorch-grad-cam reads from them."""

from __future__ import annotations

import torch
from torch import nn

from inverse_detr.config import ConfigError
from inverse_detr.detectors.interface import Detector

# where each family's backbone stages live: Grad-CAM's default layer is the last of them (the
# classic choice, the last convolutional stage: stride 16 here). The stride-8 stage before it
# resolves edges better, but there the R-CNNs' class maps came out empty (ReLU of a sum below
# zero everywhere) for 4–5 of 10 shapes detections, against none at the last stage.
BACKBONE_STAGES = {
    "detr": "model.backbone.model",
    "retinanet": "backbone.body",
    "fcos": "backbone.body",
    "faster_rcnn": "backbone.body",
    "mask_rcnn": "backbone.body",
}


class CandidateOutputs(nn.Module):
    """images (B, 3, H, W) in [0, 1] → one candidate's outputs: "class" (B, 1), its class
    evidence for `category` (`Detector.candidate_log_odds`: the score's log-odds, whose
    gradient does not shrink as the score nears 1); "box" (B, 4), its box xyxy pixels
    (`Detector.candidate_box`)."""

    def __init__(self, detector: Detector, candidate: int, category: int, output: str) -> None:
        super().__init__()
        if output not in ("class", "box"):
            raise ValueError(f"output is {output!r}; allowed: class, box")
        self.inner = detector.module  # a child, so that parameters() and eval() reach it
        self.detector, self.candidate, self.category = detector, candidate, category
        self.output = output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.output == "class":
            return self.detector.candidate_log_odds(images, self.candidate, self.category)[:, None]
        return self.detector.candidate_box(images, self.candidate, self.category)


class OutputTarget:
    """pytorch-grad-cam target: output `index` of one image's (D,) model output."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output[..., self.index]


def default_layer(detector: Detector) -> str:
    """The name of `detector`'s last backbone stage ("" for a family without one listed)."""
    body = dict(detector.module.named_modules()).get(BACKBONE_STAGES.get(detector.name, ""))
    if body is None or not list(body.named_children()):
        return ""
    return f"{BACKBONE_STAGES[detector.name]}.{list(body.named_children())[-1][0]}"


def feature_layer(detector: Detector, name: str = "") -> nn.Module:
    """The module `name` inside `detector.module` ("": `default_layer`); an unknown name is a
    one-line ConfigError (a ValueError) naming the key and a few names."""
    name = name or default_layer(detector)
    modules = dict(detector.module.named_modules())
    if not name or name not in modules:
        known = [n for n in modules if n.count(".") <= 2 and n][:12]
        raise ConfigError(
            f"config key 'attribution.layer' is {name!r}: no such module in the "
            f"{detector.name} detector; e.g. {', '.join(known)}"
        )
    return modules[name]
