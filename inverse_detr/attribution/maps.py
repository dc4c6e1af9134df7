"""The maps one detection gets, and the operations every method shares on them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

COORDINATES = ("x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class AttributionSettings:
    """How to attribute (the `attribution.*` config keys of the same names).

    layer: Grad-CAM's feature layer, a module name inside `detector.module` ("": the
        backbone's last stage, `targets.default_layer`);
    restrict: zero the maps outside the detection's box grown by `margin` px on every side;
    window, stride: occlusion's square patch side and step, px.
    """

    layer: str = ""
    restrict: bool = True
    margin: int = 0
    window: int = 8
    stride: int = 4


@dataclass
class AttributionMaps:
    """One detection's maps on an (H, W) canvas, all finite and ≥ 0, each scaled to max 1
    (all zero when a method finds nothing).

    method: "gradcam" | "occlusion";  cls: (H, W) the class score's map;
    coords: (4, H, W) the maps of x1, y1, x2, y2 (`COORDINATES`).
    """

    method: str
    cls: torch.Tensor
    coords: torch.Tensor

    @property
    def box(self) -> torch.Tensor:
        """(H, W) the box as a whole: the mean of the four coordinate maps (each at max 1)."""
        return scale_to_max(self.coords.mean(0))


def scale_to_max(values: torch.Tensor) -> torch.Tensor:
    """(..., H, W) → the same, ≥ 0 and finite, each (H, W) map divided by its maximum (a map
    without positive values stays zero)."""
    values = torch.nan_to_num(values.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0)
    peak = values.flatten(-2).amax(-1)[..., None, None]
    return torch.where(peak > 0, values / peak.clamp(min=1e-12), torch.zeros_like(values))


def box_region(box: torch.Tensor, size: tuple[int, int], margin: int = 0) -> torch.Tensor:
    """(H, W) bool: the pixels whose centres lie in `box` (4,) xyxy canvas pixels grown by
    `margin` px per side (at least the one pixel nearest the box centre, however thin the box)."""
    h, w = size
    x1, y1, x2, y2 = (float(v) for v in box)
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    inside = (xs >= x1 - margin) & (xs <= x2 + margin) & (ys >= y1 - margin) & (ys <= y2 + margin)
    if not inside.any():
        cy = min(max(int((y1 + y2) / 2), 0), h - 1)
        cx = min(max(int((x1 + x2) / 2), 0), w - 1)
        inside[cy, cx] = True
    return inside


def restrict(
    maps: AttributionMaps, box: torch.Tensor, settings: AttributionSettings
) -> AttributionMaps:
    """The maps zeroed outside the box (+ margin) when `settings.restrict`, then rescaled."""
    if not settings.restrict:
        return AttributionMaps(maps.method, scale_to_max(maps.cls), scale_to_max(maps.coords))
    region = box_region(box, tuple(maps.cls.shape[-2:]), settings.margin).to(maps.cls.device)
    return AttributionMaps(
        maps.method, scale_to_max(maps.cls * region), scale_to_max(maps.coords * region)
    )
