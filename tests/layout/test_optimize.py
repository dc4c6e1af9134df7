"""The alternating optimiser on any detector, and single-query visualisation on a tiny DETR."""

from dataclasses import replace

import pytest
import torch

from inverse_detr.detectors.classic import FAMILIES
from inverse_detr.detectors.detr import image_normalization, load_detr
from inverse_detr.detectors.detr_detector import DetrDetector
from inverse_detr.detectors.loading import load_detector
from inverse_detr.layout.optimize import (
    InversionSettings,
    invert_layouts,
    measure_loss,
    select_terms,
)
from inverse_detr.layout.settings import tuned_settings
from inverse_detr.layout.targets import Layout

SIZE = (64, 64)
LAYOUTS = [
    Layout(torch.tensor([1, 3]), torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.7, 0.7, 0.3, 0.2]]), 0),
    Layout(torch.tensor([2]), torch.tensor([[0.5, 0.5, 0.5, 0.4]]), 1),
]


@pytest.fixture(scope="module")
def detr(tiny_detr_dir):
    return DetrDetector(load_detr(tiny_detr_dir), *image_normalization(tiny_detr_dir))


def lowered(detector, settings, size=SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(before, after) loss of each layout's image: its starting noise and its result."""
    start = invert_layouts(detector, LAYOUTS, size, replace(settings, iterations=0), progress=False)
    result = invert_layouts(detector, LAYOUTS, size, settings, progress=False)
    assert result.loss.shape == (settings.iterations, 2) and result.images.shape == (2, 3, *size)
    before = measure_loss(detector, start.images, LAYOUTS, settings)
    return before, measure_loss(detector, result.images, LAYOUTS, settings)


SHIPPED = (
    "shapes-detr",
    "shapes-retinanet",
    "shapes-fcos",
    "shapes-faster-rcnn",
    "shapes-mask-rcnn",
)


@pytest.mark.parametrize("name", SHIPPED)
def test_twenty_tuned_iterations_lower_the_loss_of_a_shipped_detector(name):
    """The whole I-step with the family's tuned settings (regularisers, blur, jitter) on each
    shipped detector: the mean objective over the layouts falls (one layout may lag while the
    early blur is strong)."""
    detector = load_detector(f"checkpoints/{name}")
    settings = replace(tuned_settings(detector.name), iterations=20, seed=1)
    before, after = lowered(detector, settings, (128, 128))
    assert after.mean() < 0.95 * before.mean(), (before, after)


PLAIN = InversionSettings(  # no regulariser: what moves the images is the detector's gradient
    lr=20.0, jitter=0, tv_weight=0, p_norm_weight=0, blur=replace(InversionSettings().blur, every=0)
)


def test_twenty_iterations_lower_the_loss_of_a_tiny_detr(detr):
    # a random DETR barely looks at its input: without the regularisers' pull, only descent
    before, after = lowered(detr, replace(PLAIN, iterations=20, seed=1))
    assert (after < before).all(), (before, after)


def test_images_do_not_depend_on_the_batch(detr):
    settings = replace(PLAIN, iterations=3, seed=2)
    start = invert_layouts(detr, LAYOUTS, SIZE, replace(settings, iterations=0), progress=False)
    together = invert_layouts(detr, LAYOUTS, SIZE, settings, batch_size=2, progress=False)
    alone = invert_layouts(detr, LAYOUTS, SIZE, settings, batch_size=1, progress=False)
    moved = (together.images - start.images).abs().amax(dim=(1, 2, 3))  # (2,) per image
    assert (moved > 1e-2).all()  # the images did move ...
    assert torch.allclose(together.images, alone.images, atol=1e-4)  # ... the same in any batch
    jittered = InversionSettings(iterations=3, seed=2)  # noise and jitter: drawn per layout
    together = invert_layouts(detr, LAYOUTS, SIZE, jittered, batch_size=2, progress=False)
    alone = invert_layouts(detr, LAYOUTS, SIZE, jittered, batch_size=1, progress=False)
    assert torch.allclose(together.images, alone.images, atol=1e-4)
    other_seed = invert_layouts(detr, LAYOUTS, SIZE, replace(jittered, seed=3), progress=False)
    assert not torch.allclose(together.images, other_seed.images, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_classic_family_inverts_independently_of_the_batch(family, tiny_classic):
    detector = tiny_classic(family)
    settings = replace(PLAIN, iterations=3, seed=5)
    start = invert_layouts(detector, LAYOUTS, SIZE, replace(settings, iterations=0), progress=False)
    together = invert_layouts(detector, LAYOUTS, SIZE, settings, batch_size=2, progress=False)
    alone = invert_layouts(detector, LAYOUTS, SIZE, settings, batch_size=1, progress=False)
    assert together.images.shape == (2, 3, *SIZE) and together.loss.shape == (3, 2)
    assert together.images.min() >= 0 and together.images.max() <= 1
    assert together.loss.isfinite().all()
    moved = (together.images - start.images).abs().amax(dim=(1, 2, 3))  # (2,) per image
    assert (moved > 1e-3).all()  # the detector's gradient reached the pixels
    assert torch.allclose(together.images, alone.images, atol=1e-4)


def test_select_terms_sums_the_named_terms():
    losses = {"cls": torch.tensor([1.0, 2.0]), "reg": torch.tensor([10.0, 20.0])}
    assert select_terms(losses, "all").tolist() == [11.0, 22.0]
    assert select_terms(losses, "cls").tolist() == [1.0, 2.0]
    assert select_terms(losses, "cls+reg").tolist() == [11.0, 22.0]
    with pytest.raises(ValueError, match="unknown loss term 'mask'; this detector gives cls, reg"):
        select_terms(losses, "mask")


def test_clipping_holds_under_a_huge_step(detr):
    settings = InversionSettings(
        iterations=3, lr=1e4, blur=replace(InversionSettings().blur, every=0)
    )
    images = invert_layouts(detr, LAYOUTS[:1], SIZE, settings, progress=False).images
    assert images.min() >= -1e-5 and images.max() <= 1 + 1e-5
    assert images.min() < 1e-3 and images.max() > 1 - 1e-3  # driven to the bounds, held there
