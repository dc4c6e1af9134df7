"""The alternating optimiser: images a frozen detector reads as a target layout.

Every iteration runs the detector once on the jittered images through its `inversion_losses`:
the detector's own Z-step (DETR's Hungarian matching, the dense detectors' assignment, the
R-CNNs' training pieces) turns each layout into pseudo-targets for its raw outputs, and the
I-step takes one SGD step (momentum, step decay) on the normalised pixels down the selected
loss terms plus the image regularisers; the pixels are then blurred when the schedule says so
and clipped to the valid range. B layouts go at once, each with its own Z-step, noise, jitter
and loss, so an image does not depend on its batch. Nothing here asks which detector it holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from inverse_detr.detectors.interface import Detector, module_device
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

# (images (B, 3, H, W) in [0, 1] after the jitter, shifts (B, 2) of the jitter in the
# normalised box frame, (dx, dy): see `box_shift`) -> (B,) loss
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InversionSettings:
    """Optimiser and regulariser settings; every regulariser is on by default."""

    iterations: int = 1000
    lr: float = 1.0  # large: the gradients on the pixels are small
    momentum: float = 0.9
    lr_step: int = 700  # × lr_gamma every lr_step iterations (0: constant rate)
    lr_gamma: float = 0.3
    blur: BlurSchedule = field(default_factory=BlurSchedule)
    jitter: int = 4  # px: each iteration shifts each image by up to ± this per axis (0: off)
    tv_weight: float = 0.05
    p_norm_weight: float = 1e-4
    p: float = 6.0
    init_std: float = 0.5  # the starting noise, in normalised units
    terms: str = "all"  # all | cls | reg | cls+reg | mask: the inversion_losses terms used
    seed: int = 0


@dataclass
class InversionResult:
    """images: (N, 3, H, W) in [0, 1], on the CPU;  loss: (T, N) the detector objective of each
    image at each iteration;  seconds: wall time of the optimisation."""

    images: torch.Tensor
    loss: torch.Tensor
    seconds: float

    @property
    def per_second(self) -> float:
        return len(self.images) / self.seconds if self.seconds else float("nan")

    @staticmethod
    def concat(parts: list[InversionResult]) -> InversionResult:
        return InversionResult(
            torch.cat([p.images for p in parts]),
            torch.cat([p.loss for p in parts], dim=1),
            sum(p.seconds for p in parts),
        )


def select_terms(losses: dict[str, torch.Tensor], terms: str) -> torch.Tensor:
    """(B,) the sum of the `terms` of `inversion_losses`' {name: (B,)}: "all", or names joined
    by '+' ("cls", "cls+reg", ...). An unknown name is a ValueError naming the available ones."""
    names = sorted(losses) if terms == "all" else list(dict.fromkeys(terms.split("+")))
    unknown = [name for name in names if name not in losses]
    if unknown or not names:
        raise ValueError(
            f"unknown loss term {'+'.join(unknown) or terms!r}; this detector gives "
            f"{', '.join(sorted(losses))} (or all)"
        )
    return torch.stack([losses[name] for name in names]).sum(0)


def layout_objective(
    detector: Detector,
    layouts: list[Layout],
    settings: InversionSettings,
    image_size: tuple[int, int],
) -> Objective:
    """The detector's inversion losses toward each layout, its boxes moved with the image's
    jitter, summed over `settings.terms`. image_size: (H, W) of the canvas."""

    def objective(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        moved = [layout.shifted(shift) for layout, shift in zip(layouts, shifts, strict=True)]
        targets = [layout.targets(image_size) for layout in moved]
        return select_terms(detector.inversion_losses(images, targets), settings.terms)

    return objective


@torch.no_grad()
def measure_loss(
    detector: Detector,
    images: torch.Tensor,
    layouts: list[Layout],
    settings: InversionSettings = InversionSettings(),
) -> torch.Tensor:
    """(N,) the objective of [0, 1] images toward their layouts, as the I-step sees it (no
    jitter). images: (N, 3, H, W) on any device; runs on the detector's; the result on the CPU.
    """
    device = module_device(detector)
    size = (images.shape[-2], images.shape[-1])
    moved = [layout.to(device) for layout in layouts]
    no_shift = torch.zeros(len(images), 2, device=device)
    objective = layout_objective(detector, moved, settings, size)
    return objective(images.to(device), no_shift).cpu()


def invert_layouts(
    detector: Detector,
    layouts: list[Layout],
    image_size: tuple[int, int],
    settings: InversionSettings = InversionSettings(),
    batch_size: int = 16,
    progress: bool = True,
) -> InversionResult:
    """One image per layout, optimised `batch_size` layouts at a time on the detector's device.

    Layout i's noise and jitter come from (settings.seed, i): its image is the same whatever
    the batch size. image_size: (H, W); the result's images (N, 3, H, W) in [0, 1].
    """
    device = module_device(detector)
    parts = []
    for start in range(0, len(layouts), batch_size):
        batch = [layout.to(device) for layout in layouts[start : start + batch_size]]
        keys = list(range(start, start + len(batch)))
        label = f"layouts {start + 1}-{start + len(batch)}/{len(layouts)}"
        objective = layout_objective(detector, batch, settings, image_size)
        parts.append(
            optimize_images(detector, objective, keys, image_size, settings, label, progress)
        )
    return InversionResult.concat(parts)


def optimize_images(
    detector: Detector,
    objective: Objective,
    keys: list[int],
    image_size: tuple[int, int],
    settings: InversionSettings,
    label: str = "",
    progress: bool = True,
) -> InversionResult:
    """Optimise one (3, H, W) image per key (its random stream) to minimise `objective` +
    regularisers, in the detector's normalised space; each iteration the objective sees the
    jittered images in [0, 1]."""
    device = module_device(detector)
    started = time.perf_counter()
    pixels = PixelRange(detector.mean, detector.std, device)
    streams = [torch.Generator().manual_seed(settings.seed * 1_000_003 + key) for key in keys]
    h, w = image_size
    noise = torch.stack([torch.randn(3, h, w, generator=g) for g in streams])  # (B, 3, H, W)
    images = pixels.clip_((noise * settings.init_std).to(device)).requires_grad_(True)
    optimizer = torch.optim.SGD([images], lr=settings.lr, momentum=settings.momentum)
    schedule = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=settings.lr_step or settings.iterations + 1, gamma=settings.lr_gamma
    )
    history = []
    steps = range(settings.iterations)
    bar = tqdm(steps, desc=label or "inverting", disable=not progress, leave=False)
    for iteration in bar:
        shifts = _draw_shifts(streams, settings.jitter)  # (B, 2) px, (dy, dx)
        seen = pixels.to_pixels(jitter(images, shifts))  # (B, 3, H, W) in [0, 1]
        loss = objective(seen, box_shift(shifts, image_size).to(device))
        optimizer.zero_grad(set_to_none=True)
        (loss + _penalty(images, settings)).sum().backward()
        optimizer.step()
        schedule.step()
        _blur_and_clip(images, pixels, settings.blur.sigma_at(iteration))
        history.append(loss.detach())
        if progress and iteration % 50 == 0:
            bar.set_postfix(loss=f"{loss.mean().item():.3f}")
    losses = torch.stack(history).cpu() if history else torch.zeros(0, len(keys))
    images_01 = pixels.to_pixels(images.detach()).clamp_(0.0, 1.0).cpu()  # rounding only
    return InversionResult(images_01, losses, time.perf_counter() - started)


@torch.no_grad()
def _blur_and_clip(images: torch.Tensor, pixels: PixelRange, sigma: float | None) -> None:
    """In place, after each step: the scheduled blur when one is due, then the valid range."""
    if sigma is not None:
        images.copy_(blur(images, sigma))
    pixels.clip_(images)


def _penalty(images: torch.Tensor, settings: InversionSettings) -> torch.Tensor:
    """(B,) the weighted total variation and p-norm of each image."""
    tv = settings.tv_weight * total_variation(images)
    return tv + settings.p_norm_weight * p_norm(images, settings.p)


def _draw_shifts(streams: list[torch.Generator], amount: int) -> torch.Tensor:
    """(B, 2) long: each image's own (dy, dx), uniform in [−amount, amount]."""
    if amount <= 0:
        return torch.zeros(len(streams), 2, dtype=torch.long)
    return torch.stack([torch.randint(-amount, amount + 1, (2,), generator=g) for g in streams])
