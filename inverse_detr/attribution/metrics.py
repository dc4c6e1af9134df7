"""Where a map's mass lies on one object: a band along its boundary vs its interior, and how
much the class and box maps agree. Pure functions of (H, W) tensors.

- boundary band: pixels within `width` px of the object's mask boundary, on either side
  (Euclidean distance transform of the mask and of its complement);
- interior: mask pixels farther than `width` px from the boundary;
- share of a region: the map's mass there over its total mass (NaN for an all-zero map:
  Grad-CAM's ReLU leaves nothing when the weighted channels sum below zero everywhere; such
  maps are counted apart and left out of the means);
- top region: the `fraction` of a region's pixels (the box's, when the maps are restricted)
  with the highest values; the overlap of two maps is the IoU of their top regions.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from inverse_detr.attribution.maps import AttributionMaps


def boundary_regions(mask: torch.Tensor, width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(band, interior), each (H, W) bool, of an (H, W) bool object mask (see the module)."""
    inside = mask.bool().cpu().numpy()
    to_outside = distance_transform_edt(inside)  # inside: distance to the nearest outside pixel
    to_inside = distance_transform_edt(~inside)  # outside: distance to the nearest mask pixel
    band = (inside & (to_outside <= width)) | (~inside & (to_inside <= width))
    interior = inside & (to_outside > width)
    return torch.from_numpy(band), torch.from_numpy(interior)


def share(values: torch.Tensor, region: torch.Tensor) -> float:
    """The share of (H, W) ≥ 0 `values`' mass inside the (H, W) bool region (NaN: no mass)."""
    total = float(values.sum())
    return float(values[region.to(values.device)].sum()) / total if total > 0 else math.nan


def top_region(
    values: torch.Tensor, fraction: float, region: torch.Tensor | None = None
) -> torch.Tensor:
    """(H, W) bool: the ceil(fraction · n) highest-valued of the n pixels of `region` (None:
    the whole map); ties broken by pixel order."""
    within = torch.ones_like(values, dtype=torch.bool) if region is None else region.bool()
    flat, allowed = values.flatten().float(), within.flatten().to(values.device)
    count = math.ceil(fraction * int(allowed.sum()))
    ranked = torch.where(allowed, flat, torch.full_like(flat, -math.inf))
    chosen = torch.zeros_like(allowed)
    chosen[torch.topk(ranked, count, sorted=False).indices] = True
    return chosen.view_as(values)


def top_iou(
    a: torch.Tensor, b: torch.Tensor, fraction: float, region: torch.Tensor | None = None
) -> float:
    """IoU of the top `fraction` regions of two (H, W) maps (see `top_region`)."""
    ta, tb = top_region(a, fraction, region), top_region(b, fraction, region)
    union = int((ta | tb).sum())
    return int((ta & tb).sum()) / union if union else 0.0


def detection_metrics(
    maps: AttributionMaps,
    mask: torch.Tensor,
    width: float,
    fraction: float,
    region: torch.Tensor | None = None,
) -> dict[str, float]:
    """One detection's numbers for one method: the boundary and interior shares of its class
    map and its box map, and the IoU of their top `fraction` regions (within `region`, the
    restriction box, when given). mask: (H, W) bool, the object's."""
    band, interior = boundary_regions(mask, width)
    out = {}
    for name, values in (("cls", maps.cls), ("box", maps.box)):
        out[f"{name}_boundary"] = share(values, band)
        out[f"{name}_interior"] = share(values, interior)
    empty = not (maps.cls.any() and maps.box.any())
    out["top_iou"] = math.nan if empty else top_iou(maps.cls, maps.box, fraction, region)
    out["band_pixels"], out["interior_pixels"] = int(band.sum()), int(interior.sum())
    return out


SUMMARY_KEYS = ("cls_boundary", "cls_interior", "box_boundary", "box_interior", "top_iou")


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Mean of each `SUMMARY_KEYS` number per method, over all detections ("all") and over the
    textured and the flat categories' (rows: {"method", "textured", *SUMMARY_KEYS}), NaNs (empty
    maps) left out (None when all are); each group also gives its detection count "n" and the
    empty class and box maps ("cls_empty", "box_empty")."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["method"], "all"].append(row)
        groups[row["method"], "textured" if row["textured"] else "flat"].append(row)
    out: dict[str, dict] = defaultdict(dict)
    for (method, group), members in sorted(groups.items()):
        means = {k: _mean([m[k] for m in members]) for k in SUMMARY_KEYS}
        empty = {
            f"{name}_empty": sum(math.isnan(m[f"{name}_boundary"]) for m in members)
            for name in ("cls", "box")
        }
        out[method][group] = {"n": len(members), **empty, **means}
    return dict(out)


def _mean(values: list[float]) -> float | None:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else None
