"""Image regularisers of layout inversion, all on the images' own device.

Images here are (B, 3, H, W) in the detector's normalised space. Periodic Gaussian blur
(torchvision) with a decaying sigma, random jitter (a real shift of the image the detector
sees), total variation (kornia) and a p-norm penalty keep the optimised pixels image-like;
`PixelRange` clips them to what a real image can hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import kornia
import torch
from torchvision.transforms.v2.functional import gaussian_blur


@dataclass(frozen=True)
class BlurSchedule:
    """Blur every `every` iterations; sigma starts at `sigma`, × `decay` per blur, ≥ `floor`."""

    sigma: float = 5.0
    decay: float = 0.985
    every: int = 5
    floor: float = 0.5

    def sigma_at(self, iteration: int) -> float | None:
        """The sigma to blur with after `iteration` (0-based), None when no blur is due."""
        if self.every <= 0 or self.sigma <= 0 or (iteration + 1) % self.every:
            return None
        blurs_before = (iteration + 1) // self.every - 1
        return max(self.floor, self.sigma * self.decay**blurs_before)


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, C, H, W) Gaussian blur of std `sigma` px, kernel ±3 sigma (within the image)."""
    radius = min(math.ceil(3 * sigma), (min(images.shape[-2:]) - 1) // 2)
    if radius < 1:
        return images
    return gaussian_blur(images, kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma])


def jitter(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Each image rolled by its own (dy, dx) pixels; content leaving one side re-enters opposite.

    images: (B, C, H, W);  shifts: (B, 2) long
    """
    return torch.stack(
        [
            torch.roll(x, (int(dy), int(dx)), dims=(-2, -1))
            for x, (dy, dx) in zip(images, shifts, strict=True)
        ]
    )


def box_shift(shifts: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(B, 2) `jitter`'s (dy, dx) pixel shifts as (dx, dy) in the layouts' normalised box frame."""
    h, w = image_size
    return shifts.flip(-1).float() / torch.tensor([w, h], dtype=torch.float32)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """(B,) anisotropic L1 total variation per image: mean neighbour difference, summed over C."""
    return kornia.losses.total_variation(images, reduction="mean").sum(-1)  # (B, C) -> (B,)


def p_norm(images: torch.Tensor, p: float = 6.0) -> torch.Tensor:
    """(B,) mean |x|^p per image: penalises the extreme pixel values first."""
    return images.abs().pow(p).flatten(1).mean(1)


class PixelRange:
    """The normalised values a real image can hold: (0 − mean)/std … (1 − mean)/std per channel."""

    def __init__(
        self,
        mean: Sequence[float] | torch.Tensor,
        std: Sequence[float] | torch.Tensor,
        device: torch.device | str | None = None,
    ) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.low, self.high = -self.mean / self.std, (1.0 - self.mean) / self.std

    def to(self, device: torch.device | str) -> PixelRange:
        return PixelRange(self.mean.flatten(), self.std.flatten(), device)

    def clip_(self, images: torch.Tensor) -> torch.Tensor:
        """Clip normalised `images` in place to the valid range."""
        return images.clamp_(self.low, self.high)

    def to_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised → pixels ([0, 1] for clipped images, up to rounding)."""
        return images * self.std + self.mean

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels → normalised."""
        return (pixels - self.mean) / self.std
