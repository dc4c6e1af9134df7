"""Grayscale input: the gray images DETR sees, and what the analysis reports for known
reconstructions (the colour image back, or the gray input back) and for a tiny inverter."""

import dataclasses
import json

import pytest
import torch

from inverse_detr.analysis import grayscale
from inverse_detr.analysis.color import circular_distance, masked_hue
from inverse_detr.analysis.grayscale import category_hue, grayscale_analysis, to_grayscale
from inverse_detr.analysis.objects import batch_objects
from inverse_detr.data.shapes import SHAPE_CLASSES

PROTOTYPES = {i + 1: c.prototype_hue for i, c in enumerate(SHAPE_CLASSES[:6])}


def test_gray_images_have_three_equal_channels_of_luma():
    images = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    images[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # pure red
    images[1, :, -1, -1] = 0.0  # padding stays black
    gray = to_grayscale(images)
    assert gray.shape == images.shape
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert gray[0, 0, 0, 0].item() == pytest.approx(0.299, abs=1e-3)  # ITU-R 601 luma
    assert gray[1, :, -1, -1].tolist() == [0.0, 0.0, 0.0]


def test_category_hue_summary():
    summary = category_hue([350.0, 10.0, float("nan")], [0.5, 0.7, 0.0], 20.0)
    assert summary.objects == 3 and summary.with_hue == 2
    assert circular_distance(torch.tensor(summary.hue), 0.0).item() < 1e-3
    assert summary.to_prototype == pytest.approx(20.0)  # (30° + 10°) / 2
    assert summary.saturation == pytest.approx(0.4)
    gray = category_hue([float("nan")], [0.0], None)
    assert gray.hue is None and gray.to_prototype is None and gray.with_hue == 0


def test_detr_sees_the_gray_image_and_the_colour_one(tiny_inverter, val_images, monkeypatch):
    fed, original = [], grayscale.embed

    def spy(inverter, images, pixel_mask):
        fed.append(images.clone())
        return original(inverter, images, pixel_mask)

    monkeypatch.setattr(grayscale, "embed", spy)
    result = grayscale_analysis(
        tiny_inverter, val_images, PROTOTYPES, batch_size=4, examples=2, progress=False
    )
    assert len(fed) == 2  # one batch: the colour images (AP), then the gray ones
    colour, gray = fed
    assert torch.equal(colour, val_images.images)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert not torch.equal(gray, colour)
    stages = ["backbone", "encoder", "decoder", "head", "head_soft"]
    assert result.stages == stages
    assert set(result.mse_to_gray) == set(result.mse_to_color) == set(stages)
    assert set(result.hue_to_prototype) == set(result.saturation) == {"input", *stages}
    assert set(result.categories) == {"input", *stages} and set(result.ap) == {"color", "gray"}
    assert set(result.examples) == {"colour input", "gray input", *stages}
    assert all(x.shape == (2, 3, 64, 64) for x in result.examples.values())
    assert all(result.mse_to_gray[s] != result.mse_to_color[s] for s in stages)
    json.dumps(result.to_dict())


def test_the_input_row_is_the_colour_images_hue(tiny_inverter, val_images):
    result = grayscale_analysis(tiny_inverter, val_images, PROTOTYPES, ["decoder"], progress=False)
    owners, masks, labels = batch_objects(val_images.targets)
    hue, sat = masked_hue(val_images.images, masks, owners)
    protos = torch.tensor([PROTOTYPES[int(c)] for c in labels])
    assert result.objects == len(labels)
    assert result.hue_to_prototype["input"] == pytest.approx(
        circular_distance(hue, protos).nanmean().item(), abs=1e-3
    )
    assert result.saturation["input"] == pytest.approx(sat.mean().item(), abs=1e-5)
    label = int(labels[0])
    assert result.categories["decoder"][label].prototype == PROTOTYPES[label]


class Returns:
    """A chain that reconstructs the same images from every stage."""

    backbone = encoder = decoder = head = object()

    def __init__(self, images):
        self.images = images

    def parameters(self):  # where the inverter runs: the CPU
        return iter([self.images])

    def reconstruct(self, emb, stage, layer=None, soft=None):
        return self.images


def test_colour_restored_and_colour_lost(tiny_inverter, val_images):
    back = dataclasses.replace(tiny_inverter, chain=Returns(val_images.images))
    restored = grayscale_analysis(back, val_images, PROTOTYPES, ["decoder"], progress=False)
    assert restored.mse_to_color["decoder"] == 0.0 and restored.mse_to_gray["decoder"] > 0.0
    assert restored.hue_to_prototype["decoder"] == restored.hue_to_prototype["input"]
    assert restored.saturation["decoder"] == restored.saturation["input"] > 0.1
    gray = dataclasses.replace(tiny_inverter, chain=Returns(to_grayscale(val_images.images)))
    lost = grayscale_analysis(gray, val_images, PROTOTYPES, ["decoder"], progress=False)
    assert lost.mse_to_gray["decoder"] == 0.0 and lost.mse_to_color["decoder"] > 0.0
    assert lost.saturation["decoder"] == pytest.approx(0.0, abs=1e-6)
    assert lost.hue_to_prototype["decoder"] is None  # a gray reconstruction has no hue
