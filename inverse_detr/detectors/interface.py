"""The one interface every detector is used through: evaluation, layout inversion and
attribution never ask which detector they hold.

Images are (B, 3, H, W) RGB in [0, 1] on the canvas; each detector normalises them itself with
its own statistics (`mean`, `std`), so that pixel optimisation and attribution work in one
space for all. Category ids are the dataset's (COCO) ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class Prediction:
    """One image's detections after the detector's own post-processing.

    boxes: (N, 4) float xyxy in canvas pixels;  scores: (N,) in [0, 1];
    labels: (N,) long category ids;  masks: (N, H, W) bool instance masks, or None
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The form torchmetrics' MeanAveragePrecision takes (masks as uint8 when present)."""
        out = {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}
        if self.masks is not None:
            out["masks"] = self.masks.to(torch.uint8)
        return out


@dataclass
class Candidates:
    """The units a detector reads objects with, on an (H, W) canvas: DETR's queries, the
    dense detectors' anchors or points, the R-CNNs' anchors (each usable as a fixed RoI).

    count: how many;  boxes: (A, 4) xyxy canvas pixels, or None (queries have no fixed place);
    levels: (A,) long feature-pyramid level of each (all 0 without a pyramid)
    """

    count: int
    boxes: torch.Tensor | None
    levels: torch.Tensor


def module_device(detector: Detector) -> torch.device:
    """The device of the detector's parameters."""
    return next(detector.module.parameters()).device


def detect(detector: Detector, images: torch.Tensor, batch_size: int = 16) -> list[Prediction]:
    """The detector's predictions on (N, 3, H, W) [0, 1] images, `batch_size` at a time on its
    device; one `Prediction` per image, on the CPU."""
    device = module_device(detector)
    found = []
    for chunk in images.split(batch_size):
        found += [_on_cpu(p) for p in detector.predict(chunk.to(device))]
    return found


def softmax_log_odds(logits: torch.Tensor, category: int) -> torch.Tensor:
    """(B,) log(p_k / (1 − p_k)) of a softmax over (B, C) logits without saturating (the
    softmax heads' `candidate_log_odds`): z_k − logsumexp of the other logits."""
    others = torch.cat([logits[:, :category], logits[:, category + 1 :]], 1)
    return logits[:, category] - others.logsumexp(1)


def _on_cpu(p: Prediction) -> Prediction:
    masks = p.masks.cpu() if p.masks is not None else None
    return Prediction(p.boxes.float().cpu(), p.scores.float().cpu(), p.labels.cpu(), masks)


@runtime_checkable
class Detector(Protocol):
    """What every detector offers.

    name: a short kind ("detr", "retinanet", "fcos", "faster_rcnn", "mask_rcnn");
    categories: category id → name;  mean, std: (3,) its input normalisation;
    module: the underlying `nn.Module` (for `.to`, parameters, hooks);
    max_detections: the most objects one image's detections can hold (DETR: its queries).
    """

    name: str
    categories: dict[int, str]
    max_detections: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    module: nn.Module

    def predict(
        self, images: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> list[Prediction]:
        """Post-processed detections per image, without gradients, in eval mode.
        pixel_mask: (B, H, W), 1 = real pixel, for detectors that take one (DETR)."""
        ...

    def losses(self, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        """The detector's own training losses against `targets`, per image: {name: (B,)},
        in eval mode; an image's losses never depend on the rest of the batch. targets: per
        image {"boxes": (N, 4) xyxy pixels, "labels": (N,) category ids, "masks"?: (N, H, W)}."""
        ...

    def inversion_losses(
        self, images: torch.Tensor, targets: list[dict]
    ) -> dict[str, torch.Tensor]:
        """Layout inversion's I-step objective: per image {"cls": (B,), "reg": (B,)} (and
        "mask" for detectors with masks, when the targets have them) toward the targets after
        the detector's own Z-step (its pseudo-targets for the raw outputs), in eval mode; an
        image's losses never depend on the rest of the batch. targets as for `losses`."""
        ...

    def candidates(self, size: tuple[int, int]) -> Candidates:
        """The detector's candidates on an (H, W) canvas (see `Candidates`)."""
        ...

    def candidate_log_score(
        self, images: torch.Tensor, candidate: int, category: int
    ) -> torch.Tensor:
        """(B,) log of the score candidate `candidate` gives `category` on each image, as
        post-processing ranks it, differentiable w.r.t. `images` (B, 3, H, W) in [0, 1], in
        eval mode: DETR log softmax of a query; RetinaNet log σ; FCOS log sqrt(σ(class)·
        σ(centre-ness)); R-CNNs the RoI head's log softmax on the anchor's box as the RoI."""
        ...

    def candidate_log_odds(
        self, images: torch.Tensor, candidate: int, category: int
    ) -> torch.Tensor:
        """(B,) the same evidence as `candidate_log_score` on a scale that does not saturate
        (the log score's gradient shrinks with 1 − p: to ~10⁻⁴ of this one on the shipped
        detectors' confident detections, near float32 rounding), straight from the logits,
        differentiable w.r.t. `images`, in eval mode: softmax heads (DETR, the R-CNNs' RoI
        head) z_k − logsumexp of the other logits, the log-odds of p(k); RetinaNet the class
        logit, log(σ / (1 − σ)); FCOS the mean of its class and centre-ness logits (its score
        is their sigmoids' geometric mean)."""
        ...

    def candidate_box(
        self, images: torch.Tensor, candidate: int, category: int | None = None
    ) -> torch.Tensor:
        """(B, 4) xyxy canvas pixels: the box candidate `candidate` predicts on each image
        (B, 3, H, W) in [0, 1], differentiable w.r.t. the images, in eval mode, before any
        clipping to the canvas: DETR the query's box; RetinaNet, FCOS the box regression
        decoded at the anchor (point); R-CNNs the RoI head's box regression for `category`
        (None: the class it scores highest, background aside) decoded on the anchor's box as
        the RoI. `category` only matters to the R-CNNs' class-specific boxes."""
        ...

    def raw_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The detector's outputs before post-processing, differentiable w.r.t. `images`,
        in eval mode (BatchNorm statistics untouched); names and shapes per family."""
        ...
