"""Colour filters: the target hue lands inside the mask and nothing changes outside it."""

import pytest
import torch

from inverse_detr.analysis.color import circular_distance
from inverse_detr.data.recolor import FILTERS, hue_degrees, recolor
from inverse_detr.data.shapes import hsv_to_rgb


def vivid(hue: float, size=(8, 8)) -> torch.Tensor:
    """(1, 3, H, W) a saturated colour of `hue` degrees with some value texture."""
    rgb = torch.tensor(hsv_to_rgb(hue, 0.8, 0.9), dtype=torch.float32).view(1, 3, 1, 1)
    shade = torch.linspace(0.6, 1.0, size[0] * size[1]).view(1, 1, *size)
    return rgb * shade


@pytest.fixture
def scene():
    images = torch.cat([vivid(200.0), vivid(45.0)])  # (2, 3, 8, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 1:5] = True
    return images, masks


@pytest.mark.parametrize(("name", "target"), [("red", 0.0), ("green", 120.0), ("blue", 240.0)])
def test_set_filters_put_the_hue_inside_the_mask_only(scene, name, target):
    images, masks = scene
    out = recolor(images, masks, name)
    hue, sat = hue_degrees(out)
    assert circular_distance(hue[masks], target).max() < 1.0
    assert torch.equal(out.permute(0, 2, 3, 1)[~masks], images.permute(0, 2, 3, 1)[~masks])
    # saturation and value are kept: only the hue moved
    _, sat_in = hue_degrees(images)
    assert torch.allclose(sat[masks], sat_in[masks], atol=1e-4)
    assert torch.allclose(out.amax(1)[masks], images.amax(1)[masks], atol=1e-4)


@pytest.mark.parametrize(("name", "shift"), [("shift120", 120.0), ("shift240", 240.0)])
def test_shift_filters_rotate_the_hue(scene, name, shift):
    images, masks = scene
    hue_in, _ = hue_degrees(images)
    hue_out, _ = hue_degrees(recolor(images, masks, name))
    assert circular_distance(hue_out[masks], hue_in[masks] + shift).max() < 1.0
    assert circular_distance(hue_out[~masks], hue_in[~masks]).max() < 1e-3


def test_gray_removes_saturation_inside_the_mask(scene):
    images, masks = scene
    out = recolor(images, masks, "gray")
    _, sat = hue_degrees(out)
    assert sat[masks].max() < 1e-5
    assert sat[~masks].min() > 0.5


def test_none_is_the_identity_and_unknown_names_fail(scene):
    images, masks = scene
    assert recolor(images, masks, "none") is images
    with pytest.raises(ValueError, match="unknown colour filter 'pink'"):
        recolor(images, masks, "pink")


def test_config_lists_the_same_filters():
    from inverse_detr.config import FILTERS as CONFIG_FILTERS

    assert CONFIG_FILTERS == FILTERS
