"""Occlusion (captum's `Occlusion`) of one detection: the second opinion beside Grad-CAM.

A square patch of the image's mean colour slides over the image (over the detection's box,
grown by the margin, when restricted: the windows never leave it), and each pixel gets the mean
change of an output over the patches covering it. Class: the drop of the score's log-odds
(`Detector.candidate_log_odds`), positive part (the evidence for the class; the log score
itself moves by ~10⁻⁴ on a score of 0.9999, near float32 rounding). Box coordinate c:
|c(occluded) − c(image)|, how far the patch moves that edge, whichever way.

captum wants one scalar per example, so the example is the image five times over: row 0 asks
the log-odds, rows 1–4 the coordinates x1, y1, x2, y2 (`_FiveOutputs`); captum occludes every
row of the batch with the same patch, so one box forward per patch serves rows 1–4.
"""

from __future__ import annotations

import torch
from captum.attr import Occlusion

from inverse_detr.attribution.maps import AttributionMaps, AttributionSettings, box_region
from inverse_detr.attribution.maps import restrict as restrict_maps
from inverse_detr.detectors.interface import Detector

ROWS = 5  # log-odds, x1, y1, x2, y2


class _FiveOutputs:
    """forward(crops (5N, 3, h, w)) → (5N,): the crops pasted into the image at `corner`, row
    r of each five asking output r (module docstring); coordinates as −|c − c(image)|."""

    def __init__(self, detector, image, corner, candidate, category) -> None:
        self.detector, self.image, self.corner = detector, image, corner
        self.candidate, self.category = candidate, category
        with torch.no_grad():
            self.box = detector.candidate_box(image[None], candidate, category)[0]

    def _paste(self, crops: torch.Tensor) -> torch.Tensor:
        (top, left), (h, w) = self.corner, crops.shape[-2:]
        images = self.image[None].repeat(len(crops), 1, 1, 1)
        images[:, :, top : top + h, left : left + w] = crops
        return images

    @torch.no_grad()
    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        if len(crops) % ROWS or not torch.equal(crops[1::ROWS], crops[ROWS - 1 :: ROWS]):
            raise RuntimeError("occlusion: rows of one example were occluded differently")
        odds = self.detector.candidate_log_odds(
            self._paste(crops[0::ROWS]), self.candidate, self.category
        )
        boxes = self.detector.candidate_box(
            self._paste(crops[1::ROWS]), self.candidate, self.category
        )
        moved = -(boxes - self.box).abs()  # (N, 4)
        return torch.cat([odds[:, None].float(), moved.float()], 1).flatten()


def crop_bounds(
    box: torch.Tensor, size: tuple[int, int], settings: AttributionSettings
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the occluded area: the box grown by the margin (the whole
    canvas unrestricted), at least one window wide and high, within the canvas."""
    h, w = size
    if not settings.restrict:
        return 0, 0, h, w
    rows, cols = torch.where(box_region(box, size, settings.margin))
    top, bottom = int(rows.min()), int(rows.max()) + 1
    left, right = int(cols.min()), int(cols.max()) + 1
    top, bottom = _widen(top, bottom, min(settings.window, h), h)
    left, right = _widen(left, right, min(settings.window, w), w)
    return top, left, bottom, right


def _widen(lo: int, hi: int, least: int, limit: int) -> tuple[int, int]:
    """[lo, hi) grown symmetrically to at least `least`, kept inside [0, limit)."""
    grow = max(least - (hi - lo), 0)
    lo = max(lo - grow // 2, 0)
    hi = min(max(hi, lo + least), limit)
    return min(lo, hi - least), hi


def occlusion_maps(
    detector: Detector,
    image: torch.Tensor,
    candidate: int,
    category: int,
    box: torch.Tensor,
    settings: AttributionSettings = AttributionSettings(),
    batch: int = 32,
) -> AttributionMaps:
    """Occlusion maps of candidate `candidate`'s log-odds for `category` and of its four box
    coordinates on `image` (3, H, W) in [0, 1], windows over `box` (4,) xyxy pixels (+ margin)
    when `settings.restrict`; `batch` patches per forward pass."""
    device = next(detector.module.parameters()).device
    image = image.detach().float().to(device)
    size = tuple(image.shape[-2:])
    top, left, bottom, right = crop_bounds(box.cpu(), size, settings)
    crop = image[:, top:bottom, left:right]
    forward = _FiveOutputs(detector, image, (top, left), candidate, category)
    side = min(settings.window, bottom - top, right - left)
    occlusion = Occlusion(forward)
    changes = occlusion.attribute(
        crop[None].repeat(ROWS, 1, 1, 1),
        sliding_window_shapes=(3, side, side),
        strides=(3, settings.stride, settings.stride),
        baselines=image.mean((1, 2))[:, None, None].expand_as(crop)[None],
        perturbations_per_eval=batch,
    ).mean(1)  # (5, h, w): the patch covers all three channels alike
    full = torch.zeros(ROWS, *size, device=device)
    full[:, top:bottom, left:right] = changes
    maps = AttributionMaps("occlusion", full[0].cpu(), full[1:].cpu())
    return restrict_maps(maps, box.cpu(), settings)
