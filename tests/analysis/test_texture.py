"""Masked texture removal: flattening, the per-object response, and the summary."""

import pytest
import torch

from inverse_detr.analysis.texture import (
    ObjectChange,
    flatten_objects,
    object_response,
    summarise,
)
from inverse_detr.detectors.interface import Prediction


def test_flattening_sets_each_mask_to_its_mean_colour_and_nothing_else():
    image = torch.rand(3, 16, 16)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 8:14, 9:12] = True
    flat = flatten_objects(image, masks)
    for mask in masks:
        assert torch.allclose(flat[:, mask], image[:, mask].mean(1, keepdim=True).expand(3, -1))
    outside = ~masks.any(0)
    assert torch.equal(flat[:, outside], image[:, outside])


def test_an_objects_response_is_its_best_matching_same_category_detection():
    found = Prediction(
        torch.tensor([[0, 0, 10, 10], [0, 0, 6, 10], [50, 50, 60, 60]], dtype=torch.float),
        torch.tensor([0.4, 0.9, 0.99]),
        torch.tensor([1, 1, 2]),
    )
    box = torch.tensor([0, 0, 10, 10], dtype=torch.float)
    assert object_response(found, box, 1) == pytest.approx((0.9, 1.0))  # IoU 0.6 matches
    score, iou = object_response(found, box, 2)  # another category far away: not matched
    assert score == 0.0 and iou == 0.0
    assert object_response(found, box, 3) == (0.0, 0.0)


def test_summary_averages_per_bucket_and_texture():
    changes = [
        ObjectChange(2, True, "small", 1.0, 0.5, 0.9, 0.7),
        ObjectChange(2, True, "small", 0.8, 0.1, 0.8, 0.5),
        ObjectChange(1, False, "small", 0.9, 0.9, 0.9, 0.9),
        ObjectChange(1, False, "large", 0.6, 0.7, 0.8, 0.9),
    ]
    table = summarise(changes)
    assert set(table) == {"small", "large"} and set(table["large"]) == {"flat"}
    textured = table["small"]["textured"]
    assert textured["objects"] == 2
    assert abs(textured["score_change"] - (-0.6)) < 1e-6
    assert abs(textured["iou_change"] - (-0.25)) < 1e-6
    assert abs(table["large"]["flat"]["score_change"] - 0.1) < 1e-6
