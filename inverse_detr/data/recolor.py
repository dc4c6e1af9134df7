"""Colour filters applied inside object masks: the inputs of the colour-perturbation analysis.

The reference code works in OpenCV's HSV (hue 0–179, i.e. half-degrees); here hue is in
degrees. red / green / blue set the hue to 0° / 120° / 240° and keep saturation and value;
shift120 / shift240 rotate the hue by 120° / 240°; gray replaces the pixels by their luma.
Pixels outside the mask are returned unchanged. HSV conversions are kornia's.
"""

from __future__ import annotations

import math

import torch
from kornia.color import hsv_to_rgb, rgb_to_grayscale, rgb_to_hsv

FILTERS = ("none", "red", "green", "blue", "shift120", "shift240", "gray")
SET_HUE = {"red": 0.0, "green": 120.0, "blue": 240.0}  # degrees
SHIFT_HUE = {"shift120": 120.0, "shift240": 240.0}  # degrees


def recolor(images: torch.Tensor, masks: torch.Tensor, name: str) -> torch.Tensor:
    """Apply filter `name` (one of FILTERS) inside `masks`.

    images: (B, 3, H, W) RGB in [0, 1];  masks: (B, H, W) bool, where to recolour.
    Returns (B, 3, H, W) RGB in [0, 1].
    """
    if name not in FILTERS:
        raise ValueError(f"unknown colour filter {name!r}; expected one of {', '.join(FILTERS)}")
    if name == "none":
        return images
    if name == "gray":
        changed = rgb_to_grayscale(images).expand_as(images)  # (B, 1, H, W) → (B, 3, H, W)
    else:
        hsv = rgb_to_hsv(images)  # (B, 3, H, W): hue in radians [0, 2π), s, v in [0, 1]
        degrees = torch.rad2deg(hsv[:, :1])
        if name in SET_HUE:
            degrees = torch.full_like(degrees, SET_HUE[name])
        else:
            degrees = torch.remainder(degrees + SHIFT_HUE[name], 360.0)
        hue = torch.deg2rad(degrees).clamp(0.0, 2 * math.pi)
        changed = hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1)).clamp(0.0, 1.0)
    return torch.where(masks.unsqueeze(1), changed, images)


def hue_degrees(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB in [0, 1] → hue in degrees [0, 360) and saturation, each (B, H, W)."""
    hsv = rgb_to_hsv(images)
    return torch.remainder(torch.rad2deg(hsv[:, 0]), 360.0), hsv[:, 1]
