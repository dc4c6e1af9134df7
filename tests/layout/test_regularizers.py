"""Each regulariser changes the image as intended."""

import torch

from inverse_detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from inverse_detr.layout.regularizers import (
    BlurSchedule,
    PixelRange,
    blur,
    box_shift,
    jitter,
    p_norm,
    total_variation,
)
from inverse_detr.layout.targets import Layout


def high_frequency_energy(images: torch.Tensor) -> float:
    """Spectral energy above a quarter of the Nyquist frequency."""
    spectrum = torch.fft.fftshift(torch.fft.fft2(images), dim=(-2, -1)).abs() ** 2
    h, w = images.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    far = (yy.abs() > h // 8) | (xx.abs() > w // 8)
    return float(spectrum[..., far].sum())


def test_blur_lowers_high_frequencies_and_keeps_the_mean():
    torch.manual_seed(0)
    noise = torch.randn(2, 3, 64, 64)
    blurred = blur(noise, 2.0)
    assert high_frequency_energy(blurred) < 0.05 * high_frequency_energy(noise)
    assert torch.allclose(blurred.mean(), noise.mean(), atol=0.02)
    assert high_frequency_energy(blur(noise, 0.5)) > high_frequency_energy(blurred)


def test_blur_schedule_is_periodic_decays_and_has_a_floor():
    schedule = BlurSchedule(sigma=5.0, decay=0.5, every=5, floor=0.5)
    assert [schedule.sigma_at(i) for i in range(5)] == [None, None, None, None, 5.0]
    assert schedule.sigma_at(9) == 2.5 and schedule.sigma_at(14) == 1.25
    assert schedule.sigma_at(999) == 0.5
    assert BlurSchedule(every=0).sigma_at(4) is None


def test_jitter_moves_each_image_by_its_own_shift():
    images = torch.zeros(2, 3, 16, 16)
    images[:, :, 5, 7] = 1.0
    moved = jitter(images, torch.tensor([[2, -3], [-1, 4]]))
    assert moved[0, :, 7, 4].eq(1).all() and moved[1, :, 4, 11].eq(1).all()
    assert moved.sum() == images.sum()  # a roll: nothing lost


def test_jittered_boxes_follow_the_jittered_image():
    h, w = 32, 48
    images = torch.zeros(1, 3, h, w)
    images[0, :, 10, 20] = 1.0  # one bright pixel: a 1-px object centred at (20.5, 10.5)
    target = Layout(torch.tensor([1]), torch.tensor([[20.5 / w, 10.5 / h, 1 / w, 1 / h]]), 0)
    shifts = torch.tensor([[3, -5]])  # (dy, dx)
    moved = jitter(images, shifts)
    y, x = (moved[0, 0] == 1).nonzero()[0].tolist()
    centre = target.shifted(box_shift(shifts, (h, w))[0]).boxes[0, :2]
    assert torch.allclose(centre, torch.tensor([(x + 0.5) / w, (y + 0.5) / h]))


def test_clipping_holds_the_range_of_real_images():
    pixels = PixelRange(IMAGENET_MEAN, IMAGENET_STD)
    wild = torch.randn(4, 3, 8, 8) * 10
    inside = pixels.normalize(torch.rand(4, 3, 8, 8))
    assert torch.equal(pixels.clip_(inside.clone()), inside)
    clipped = pixels.to_pixels(pixels.clip_(wild))
    assert clipped.min() >= -1e-6 and clipped.max() <= 1 + 1e-6
    assert (clipped < 1e-6).any() and (clipped > 1 - 1e-6).any()  # the bounds are reached


def test_tv_and_p_norm_steps_smooth_and_tame_the_image():
    torch.manual_seed(0)
    images = (torch.randn(2, 3, 32, 32) * 2).requires_grad_(True)
    total_variation(images).sum().backward()
    smoother = images.detach() - 0.05 * images.grad
    assert (total_variation(smoother) < total_variation(images.detach())).all()
    images.grad = None
    p_norm(images, 6.0).sum().backward()
    tamer = images.detach() - 1e-4 * images.grad
    assert tamer.abs().max() < images.detach().abs().max()
    # the p-norm pushes hardest on the extremes
    assert p_norm(torch.full((1, 3, 4, 4), 2.0)) > 10 * p_norm(torch.full((1, 3, 4, 4), 1.0))
