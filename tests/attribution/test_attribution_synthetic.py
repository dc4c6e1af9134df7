"""Both methods on a detector whose class reads the interior and whose box reads the edges:
the maps must say so."""

from __future__ import annotations

import pytest
import torch
from synthetic import BOX, SIZE

from inverse_detr.attribution.explain import explain
from inverse_detr.attribution.maps import AttributionSettings, box_region
from inverse_detr.attribution.metrics import detection_metrics
from inverse_detr.attribution.select import Detection

METHODS = ("gradcam", "occlusion")
SETTINGS = AttributionSettings(layer="features", window=4, stride=2)


def detection() -> Detection:
    return Detection(candidate=0, category=1, score=0.9, box=torch.tensor(BOX, dtype=torch.float32))


@pytest.mark.parametrize("method", METHODS)
def test_class_map_lies_inside_and_box_map_on_the_edges(
    method, synthetic_detector, square_image, square_mask
):
    maps = explain(synthetic_detector, square_image, detection(), method, SETTINGS)
    region = box_region(detection().box, (SIZE, SIZE))
    numbers = detection_metrics(maps, square_mask, width=3.0, fraction=0.2, region=region)
    assert numbers["cls_interior"] > numbers["cls_boundary"], numbers
    assert numbers["box_boundary"] > numbers["box_interior"], numbers
    # and across the two maps
    assert numbers["cls_interior"] > numbers["box_interior"], numbers
    assert numbers["box_boundary"] > numbers["cls_boundary"], numbers
    assert numbers["top_iou"] < 0.5, numbers


@pytest.mark.parametrize("method", METHODS)
def test_maps_have_the_images_size_are_finite_and_zero_outside_the_box(
    method, synthetic_detector, square_image
):
    maps = explain(synthetic_detector, square_image, detection(), method, SETTINGS)
    assert maps.method == method
    assert maps.cls.shape == (SIZE, SIZE) and maps.coords.shape == (4, SIZE, SIZE)
    assert maps.box.shape == (SIZE, SIZE)
    for values in (maps.cls, maps.coords, maps.box):
        assert values.isfinite().all() and values.min() >= 0 and values.max() <= 1
    outside = ~box_region(detection().box, (SIZE, SIZE))
    assert not maps.cls[outside].any() and not maps.coords[:, outside].any()
    assert maps.cls.max() == 1 and (maps.coords.flatten(1).amax(1) == 1).all()


@pytest.mark.parametrize("method", METHODS)
def test_a_margin_widens_the_restriction_and_none_lifts_it(
    method, synthetic_detector, square_image
):
    """The box map sees the edges' outer side too once the box is grown or not restricted."""
    wide = AttributionSettings(layer="features", window=4, stride=2, margin=4)
    maps = explain(synthetic_detector, square_image, detection(), method, wide)
    grown = box_region(detection().box, (SIZE, SIZE), margin=4)
    assert not maps.box[~grown].any()
    assert maps.box[grown & ~box_region(detection().box, (SIZE, SIZE))].sum() > 0
    free = AttributionSettings(layer="features", window=4, stride=2, restrict=False)
    maps = explain(synthetic_detector, square_image, detection(), method, free)
    assert maps.box[~box_region(detection().box, (SIZE, SIZE))].sum() > 0
    assert maps.cls.isfinite().all()


def test_each_coordinate_map_lies_at_its_own_edge(synthetic_detector, square_image):
    """Occlusion: moving x1 is the work of the left edge, y2 of the bottom one, etc."""
    maps = explain(synthetic_detector, square_image, detection(), "occlusion", SETTINGS)
    middle = SIZE // 2
    columns, rows = maps.coords.sum(1), maps.coords.sum(2)  # (4, W), (4, H)
    assert columns[0, :middle].sum() > 0.9 * columns[0].sum()  # x1: the left half
    assert rows[1, :middle].sum() > 0.9 * rows[1].sum()  # y1: the top half
    assert columns[2, middle:].sum() > 0.9 * columns[2].sum()  # x2: the right half
    assert rows[3, middle:].sum() > 0.9 * rows[3].sum()  # y2: the bottom half
