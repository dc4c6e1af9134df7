"""The numbers of the finding: boundary band, interior, shares, top regions, summaries."""

from __future__ import annotations

import math

import torch

from inverse_detr.attribution.maps import AttributionMaps, box_region, scale_to_max
from inverse_detr.attribution.metrics import (
    boundary_regions,
    detection_metrics,
    share,
    summarise,
    top_iou,
    top_region,
)


def square(size: int = 20, lo: int = 5, hi: int = 15) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[lo:hi, lo:hi] = True
    return mask


def test_band_straddles_the_boundary_and_interior_is_the_rest_of_the_mask():
    mask = square()  # 10 × 10
    band, interior = boundary_regions(mask, width=2)
    assert interior.sum() == 6 * 6 and (interior <= mask).all()  # 2 px in from each side
    assert not (band & interior).any()
    # inside: the mask less its interior; outside: a 2 px ring less 3 pixels per corner
    # farther than 2 px (Euclidean) from the square
    assert band.sum() == (10 * 10 - 6 * 6) + (14 * 14 - 10 * 10 - 4 * 3)
    assert (mask & ~band == interior).all()


def test_shares_of_the_mass():
    mask = square()
    band, interior = boundary_regions(mask, width=2)
    values = interior.float()
    assert share(values, interior) == 1 and share(values, band) == 0
    assert math.isnan(share(torch.zeros(20, 20), band))  # nothing there: no share


def test_top_region_takes_the_highest_pixels_of_its_region():
    values = torch.arange(16.0).view(4, 4)
    top = top_region(values, 0.25)
    assert top.sum() == 4 and top[3].all()
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[:2] = True  # 8 pixels: the top quarter is 2 of them, the highest of rows 0-1
    top = top_region(values, 0.25, region)
    assert top.sum() == 2 and top[1, 2:].all()
    assert top_iou(values, values, 0.2) == 1.0
    assert top_iou(values, -values, 0.2) == 0.0


def test_detection_metrics_and_summary():
    mask = square()
    band, interior = boundary_regions(mask, width=2)
    coords = band.float().expand(4, -1, -1)
    maps = AttributionMaps("gradcam", interior.float(), coords)
    region = box_region(torch.tensor([5.0, 5.0, 15.0, 15.0]), (20, 20))
    numbers = detection_metrics(maps, mask, 2, 0.2, region)
    assert numbers["cls_interior"] == 1 and numbers["cls_boundary"] == 0
    assert numbers["box_boundary"] == 1 and numbers["box_interior"] == 0
    assert numbers["top_iou"] == 0
    empty = AttributionMaps("gradcam", torch.zeros(20, 20), coords)
    nothing = detection_metrics(empty, mask, 2, 0.2, region)
    assert math.isnan(nothing["cls_boundary"]) and math.isnan(nothing["top_iou"])
    rows = [
        {"method": "gradcam", "textured": True, **numbers},
        {"method": "gradcam", "textured": False, **nothing},
    ]
    summary = summarise(rows)["gradcam"]
    assert summary["all"]["n"] == 2 and summary["all"]["cls_empty"] == 1
    assert summary["all"]["cls_interior"] == 1  # the empty map is left out of the mean
    assert summary["flat"]["cls_interior"] is None and summary["textured"]["box_boundary"] == 1


def test_scale_to_max_keeps_maps_finite_and_non_negative():
    values = torch.tensor([[[-1.0, 2.0], [float("nan"), float("inf")]], [[0.0, 0.0], [0, 0]]])
    scaled = scale_to_max(values)
    assert scaled.isfinite().all() and scaled.min() >= 0
    assert scaled[0].max() == 1 and not scaled[1].any()


def test_box_region_keeps_a_pixel_of_a_degenerate_box():
    region = box_region(torch.tensor([3.2, 3.2, 3.3, 3.3]), (8, 8))
    assert region.sum() == 1 and region[3, 3]
    assert box_region(torch.tensor([0.0, 0.0, 4.0, 2.0]), (8, 8), margin=1).sum() == 5 * 3
