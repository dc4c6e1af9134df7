"""Inside the objects: does a stage keep the pattern within each object, or only its colour?

An object's interior is its instance mask eroded by `erode` pixels, so that edges and their
blur do not count. Per object and stage, in [0, 1] RGB:
  error  — the reconstruction's MSE in the interior;
  floor  — the image's own spread around the interior's mean colour: the error of a flat fill
           of the right colour, the least error of any reconstruction that keeps the colour and
           not the pattern (where the pattern's phase is lost, no reconstruction does better);
  spread — the reconstruction's spread around its own interior mean (0: a flat fill);
  kept   — the correlation of the image's and the reconstruction's luminance around their
           interior means (1: the pattern in place; 0: none, or at another phase).
Per category: error, floor and spread pixel-weighted, kept averaged over the objects where
neither is flat; `share`: the category's whole masks' part of the stage's image MSE (the
background's too), so the table says where a stage's error lives (masks that overlap, as on
COCO, count their pixels once per object, and the shares add up to more than 1).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from inverse_detr.analysis.objects import batch_objects
from inverse_detr.analysis.stages import VARIANTS, available_stages
from inverse_detr.analysis.subset import ImageSet, embed

if TYPE_CHECKING:
    from inverse_detr.export import Inverter

BACKGROUND = "background"  # the row of the pixels no object covers
FLAT = 1e-9  # a mean squared luminance deviation below this is flat ((1/255)² ≈ 1.5e-5)
SUMS = ("pixels", "error", "floor", "spread", "kept", "kept_objects", "objects")
MASK_SUMS = ("mask_pixels", "mask_error")  # whole masks (the background: its pixels)
OBJECTS_AT_ONCE = 16


def erode(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """masks: (M, H, W) bool → the same masks without the `pixels`-wide rim (3×3 steps)."""
    inside = masks.float().unsqueeze(1)  # (M, 1, H, W)
    for _ in range(pixels):
        inside = -F.max_pool2d(-inside, 3, stride=1, padding=1)
    return inside.squeeze(1) > 0.5


def interior_stats(recon: torch.Tensor, image: torch.Tensor, inside: torch.Tensor) -> dict:
    """recon, image: (M, 3, H, W) each object's image pair; inside: (M, H, W) bool interiors →
    per object (M,): pixels, and error, floor, spread summed over the interior's values
    (divide by 3·pixels for means), kept (NaN where either is flat)."""
    weight = inside.unsqueeze(1).to(image.dtype)  # (M, 1, H, W)
    pixels = weight.sum((1, 2, 3))
    count = pixels.clamp_min(1.0)

    def centred(x: torch.Tensor) -> torch.Tensor:  # (M, 3, H, W) around the interior mean
        return (x - (x * weight).sum((2, 3), keepdim=True) / count.view(-1, 1, 1, 1)) * weight

    dx, dr = centred(image), centred(recon)
    lx, lr = dx.mean(1), dr.mean(1)  # (M, H, W) luminance deviations
    px, pr = lx.pow(2).sum((1, 2)), lr.pow(2).sum((1, 2))  # (M,)
    flat = torch.minimum(px, pr) <= FLAT * count  # rounding-level spread: no pattern
    norm = torch.where(flat, torch.nan, (px * pr).sqrt())
    return {
        "pixels": pixels,
        "error": ((recon - image).pow(2) * weight).sum((1, 2, 3)),
        "floor": dx.pow(2).sum((1, 2, 3)),
        "spread": dr.pow(2).sum((1, 2, 3)),
        "kept": (lx * lr).sum((1, 2)) / norm,  # NaN where either is flat
    }


@dataclass
class InteriorsResult:
    """rows[stage][category]: objects, pixels (interior), mask_pixels (whole masks), error,
    floor, spread, kept, share; rows[stage]["background"]: pixels, mask_pixels (the same),
    error, share. Categories are the dataset's ids, as strings."""

    images: int
    erode: int
    rows: dict[str, dict[str, dict[str, float]]]

    def to_dict(self) -> dict:
        return {"images": self.images, "erode": self.erode, "rows": self.rows}


@torch.no_grad()
def interiors_analysis(
    inverter: Inverter,
    subset: ImageSet,
    stages: list[str] | None = None,
    batch_size: int = 16,
    erode_pixels: int = 3,
    progress: bool = True,
) -> InteriorsResult:
    """The interior table of every stage (default: the chain's, but head_soft) over `subset`,
    which must carry instance masks."""
    stages = stages or [s for s in available_stages(inverter.chain) if s != "head_soft"]
    subset = subset.to(inverter.device)
    sums = {s: defaultdict(lambda: dict.fromkeys(SUMS + MASK_SUMS, 0.0)) for s in stages}
    total = dict.fromkeys(stages, 0.0)  # each stage's squared error over every real pixel
    for batch in subset.chunks(batch_size, "interiors" if progress else ""):
        owners, masks, labels = batch_objects(batch.targets)
        real = batch.pixel_mask.bool()  # (B, H, W)
        covered = torch.zeros(real.shape, device=real.device).index_add_(0, owners, masks.float())
        background = real & (covered == 0)
        inside = erode(masks, erode_pixels) & real[owners]
        background_pixels = float(background.sum())  # the same for every stage
        emb = embed(inverter, batch.images, batch.pixel_mask)
        for name in stages:
            stage, soft = VARIANTS[name]
            recon = inverter.chain.reconstruct(emb, stage, soft=soft)
            squared = (recon - batch.images).pow(2).sum(1) * real  # (B, H, W) over channels
            total[name] += float(squared.sum())
            row = sums[name][BACKGROUND]
            row["pixels"] += background_pixels
            row["mask_pixels"] += background_pixels
            row["mask_error"] += float((squared * background).sum())
            for part in torch.arange(len(labels), device=labels.device).split(OBJECTS_AT_ONCE):
                o = owners[part]  # (K,) a few objects at a time: (K, 3, H, W) copies stay small
                stats = interior_stats(recon[o], batch.images[o], inside[part])
                stats["mask_pixels"] = masks[part].sum((1, 2))
                stats["mask_error"] = (squared[o] * masks[part]).sum((1, 2))
                values = {key: v.tolist() for key, v in stats.items()}  # one copy to the host
                for m, label in enumerate(labels[part].tolist()):
                    _add_object(sums[name][str(label)], values, m)
    rows = {s: _rows(sums[s], total[s]) for s in stages}
    return InteriorsResult(len(subset), erode_pixels, rows)


def _add_object(row: dict, values: dict[str, list[float]], m: int) -> None:
    row["objects"] += 1
    for key in ("pixels", "error", "floor", "spread", *MASK_SUMS):
        row[key] += values[key][m]
    if not math.isnan(values["kept"][m]):
        row["kept"] += values["kept"][m]
        row["kept_objects"] += 1


def _rows(sums: dict, total: float) -> dict[str, dict[str, float]]:
    """Per-value means and shares from the sums (NaN where nothing was counted)."""
    nan = float("nan")
    rows = {}
    for key, s in sorted(sums.items(), key=lambda kv: (kv[0] == BACKGROUND, _number(kv[0]))):
        values = 3 * s["pixels"]
        row = {"share": s["mask_error"] / total if total else nan, "pixels": s["pixels"]}
        row["mask_pixels"] = s["mask_pixels"]
        if key == BACKGROUND:
            row["error"] = s["mask_error"] / values if values else nan
        else:
            row |= {k: s[k] / values if values else nan for k in ("error", "floor", "spread")}
            row["kept"] = s["kept"] / s["kept_objects"] if s["kept_objects"] else nan
            row["objects"] = s["objects"]
        rows[key] = row
    return rows


def _number(category: str) -> int:
    return int(category) if category.isdigit() else 0
