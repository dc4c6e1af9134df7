"""The alternating optimiser and single-query visualisation on a tiny random DETR."""

from dataclasses import replace

import pytest
import torch

from inverse_detr.detectors.detr import image_normalization, load_detr
from inverse_detr.layout.context import context_statistics, single_query_images
from inverse_detr.layout.optimize import (
    InversionSettings,
    invert_layouts,
    measure_set_loss,
    optimize_images,
    query_objective,
)
from inverse_detr.layout.regularizers import PixelRange
from inverse_detr.layout.targets import Layout
from inverse_detr.layout.transfer import Detections

SIZE = (64, 64)
LAYOUTS = [
    Layout(torch.tensor([1, 3]), torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.7, 0.7, 0.3, 0.2]]), 0),
    Layout(torch.tensor([2]), torch.tensor([[0.5, 0.5, 0.5, 0.4]]), 1),
]


@pytest.fixture(scope="module")
def detr(tiny_detr_dir):
    return load_detr(tiny_detr_dir)


@pytest.fixture(scope="module")
def pixels(tiny_detr_dir):
    return PixelRange(*image_normalization(tiny_detr_dir))


def lowered(detr, pixels, settings, size=SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(before, after) set loss of each layout's image: its starting noise and its result."""
    start = invert_layouts(
        detr, LAYOUTS, pixels, size, replace(settings, iterations=0), progress=False
    )
    result = invert_layouts(detr, LAYOUTS, pixels, size, settings, progress=False)
    assert result.loss.shape == (settings.iterations, 2) and result.images.shape == (2, 3, *size)
    return measure_set_loss(detr, start.images, LAYOUTS, pixels), measure_set_loss(
        detr, result.images, LAYOUTS, pixels
    )


def test_twenty_default_iterations_lower_the_set_loss_of_the_shapes_detector():
    shipped = "checkpoints/shapes-detr"
    detr, pixels = load_detr(shipped), PixelRange(*image_normalization(shipped))
    before, after = lowered(detr, pixels, InversionSettings(iterations=20, seed=1), (128, 128))
    assert (after < 0.95 * before).all(), (before, after)


PLAIN = InversionSettings(  # no regulariser: what moves the images is the detector's gradient
    lr=20.0, jitter=0, tv_weight=0, p_norm_weight=0, blur=replace(InversionSettings().blur, every=0)
)


def test_twenty_iterations_lower_the_set_loss_of_a_tiny_detr(detr, pixels):
    # a random DETR barely looks at its input: without the regularisers' pull, only descent
    before, after = lowered(detr, pixels, replace(PLAIN, iterations=20, seed=1))
    assert (after < before).all(), (before, after)


def test_images_do_not_depend_on_the_batch(detr, pixels):
    settings = replace(PLAIN, iterations=3, seed=2)
    start = invert_layouts(detr, LAYOUTS, pixels, SIZE, replace(settings, iterations=0))
    together = invert_layouts(detr, LAYOUTS, pixels, SIZE, settings, batch_size=2, progress=False)
    alone = invert_layouts(detr, LAYOUTS, pixels, SIZE, settings, batch_size=1, progress=False)
    moved = (together.images - start.images).abs().amax(dim=(1, 2, 3))  # (2,) per image
    assert (moved > 1e-2).all()  # the images did move ...
    assert torch.allclose(together.images, alone.images, atol=1e-4)  # ... the same in any batch
    jittered = InversionSettings(iterations=3, seed=2)  # noise and jitter: drawn per layout
    together = invert_layouts(detr, LAYOUTS, pixels, SIZE, jittered, batch_size=2, progress=False)
    alone = invert_layouts(detr, LAYOUTS, pixels, SIZE, jittered, batch_size=1, progress=False)
    assert torch.allclose(together.images, alone.images, atol=1e-4)
    other_seed = invert_layouts(detr, LAYOUTS, pixels, SIZE, replace(jittered, seed=3))
    assert not torch.allclose(together.images, other_seed.images, atol=1e-3)


def test_clipping_holds_under_a_huge_step(detr, pixels):
    settings = InversionSettings(
        iterations=3, lr=1e4, blur=replace(InversionSettings().blur, every=0)
    )
    images = invert_layouts(detr, LAYOUTS[:1], pixels, SIZE, settings, progress=False).images
    assert images.min() >= -1e-5 and images.max() <= 1 + 1e-5
    assert images.min() < 1e-3 and images.max() > 1 - 1e-3  # driven to the bounds, held there


def test_single_query_raises_its_category(detr, pixels):
    query, category = 2, 17
    settings = InversionSettings(iterations=15, seed=4)
    start = optimize_images(
        detr,
        query_objective(query, category),
        [0, 1],
        pixels,
        SIZE,
        replace(settings, iterations=0),
        progress=False,
    )
    result = single_query_images(detr, query, category, 2, pixels, SIZE, settings, progress=False)
    objective = query_objective(query, category)
    before = objective(*_outputs(detr, pixels, start.images), None)
    after = objective(*_outputs(detr, pixels, result.images), None)
    assert (after < before).all(), (before, after)
    with pytest.raises(ValueError, match="query 9 out of range"):
        single_query_images(detr, 9, category, 1, pixels, SIZE, settings, progress=False)


def _outputs(detr, pixels, images):
    with torch.no_grad():
        out = detr(pixel_values=pixels.normalize(images))
    return out.logits, out.pred_boxes


def test_context_statistics_count_confident_neighbours_by_side():
    # 2 images, 4 queries, 3 real classes; the target is query 0 reading class 1
    logits = torch.full((2, 4, 4), -10.0)
    logits[0, 0, 1] = logits[0, 1, 0] = logits[0, 2, 2] = logits[0, 3, 1] = 10.0
    logits[1, 0, 0] = 10.0  # image 1: query 0 reads class 0: target not found, not counted
    logits[1, 1, 2] = 10.0
    boxes = torch.tensor([[0.5, 0.5, 0.1, 0.1]]).repeat(2, 4, 1)
    boxes[0, 1, :2] = torch.tensor([0.2, 0.8])  # class 0: left, below
    boxes[0, 2, :2] = torch.tensor([0.9, 0.1])  # class 2: right, above
    boxes[0, 3, :2] = torch.tensor([0.5, 0.2])  # class 1 again: the target's own category
    stats = context_statistics(Detections(logits, boxes), query=0, category=1)
    assert (stats.images, stats.found, stats.same) == (2, 1, 1)
    assert stats.counts == {0: 1, 2: 1}
    assert stats.sides[0] == {"left": 1, "below": 1} and stats.sides[2] == {"right": 1, "above": 1}
    assert stats.as_dict()["sides"]["0"] == {"above": 0, "below": 1, "left": 1, "right": 0}
