"""Per-object helpers shared by the grayscale and detection-error analyses: a batch's objects,
the reconstruction error inside each object's mask, and square crops around boxes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from inverse_detr.analysis.subset import AnalysisError
from inverse_detr.data.coco import Target


def batch_objects(targets: list[Target]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every object of a batch of B targets: owners (M,) the image each lies in, masks (M, H, W)
    bool, labels (M,) category ids. Needs instance masks (a dataset with `with_masks=True`)."""
    if any(len(t.masks) != len(t.labels) for t in targets):
        raise AnalysisError("this analysis needs instance masks: build the dataset with masks")
    device = targets[0].labels.device
    owners = [torch.full((len(t.labels),), i, device=device) for i, t in enumerate(targets)]
    return (
        torch.cat(owners).long(),
        torch.cat([t.masks.bool() for t in targets]),
        torch.cat([t.labels for t in targets]),
    )


def in_mask_mse(
    recon: torch.Tensor, images: torch.Tensor, masks: torch.Tensor, owners: torch.Tensor
) -> torch.Tensor:
    """Per object, the MSE of [0, 1] RGB pixels inside its mask only.

    recon, images: (B, 3, H, W);  masks: (M, H, W) bool;  owners: (M,) the image each mask
    lies in → (M,), NaN for an empty mask.
    """
    squared = ((recon - images) ** 2).mean(1)  # (B, H, W) mean over the channels
    inside = masks.to(squared.dtype)
    return (squared[owners] * inside).sum((1, 2)) / inside.sum((1, 2))


def box_crops(
    images: torch.Tensor, owners: torch.Tensor, boxes: torch.Tensor, size: int = 48
) -> torch.Tensor:
    """Square crops around boxes, resized to size × size (bilinear).

    images: (B, 3, H, W);  owners: (K,) the image of each box;  boxes: (K, 4) xyxy pixels.
    Each box is widened to a square on its longer side (kept inside the image where it fits),
    so shapes keep their aspect. Returns (K, 3, size, size).
    """
    height, width = images.shape[-2:]
    crops = []
    for owner, box in zip(owners.tolist(), boxes.tolist(), strict=True):
        side = max(box[2] - box[0], box[3] - box[1], 2.0)
        x0 = _start((box[0] + box[2]) / 2 - side / 2, side, width)
        y0 = _start((box[1] + box[3]) / 2 - side / 2, side, height)
        x1, y1 = min(width, x0 + math.ceil(side)), min(height, y0 + math.ceil(side))
        patch = images[owner : owner + 1, :, y0:y1, x0:x1]
        crops.append(F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(crops) if crops else images.new_zeros(0, 3, size, size)


def _start(low: float, side: float, limit: int) -> int:
    """The first pixel of a window of `side` pixels starting near `low`, inside [0, limit)."""
    return int(max(0, min(math.floor(low), limit - math.ceil(side))))
