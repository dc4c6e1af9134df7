"""Fixtures: the synthetic detector of `synthetic.py` and the image it is read on."""

from __future__ import annotations

import pytest
import torch
from synthetic import BOX, SIZE, SyntheticDetector


@pytest.fixture
def synthetic_detector() -> SyntheticDetector:
    return SyntheticDetector()


@pytest.fixture
def square_image() -> torch.Tensor:
    """(3, SIZE, SIZE): a bright square at BOX on a dark, faintly noisy background."""
    image = 0.1 + 0.02 * torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    x1, y1, x2, y2 = BOX
    image[:, y1:y2, x1:x2] = 0.9
    return image


@pytest.fixture
def square_mask() -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    x1, y1, x2, y2 = BOX
    mask[y1:y2, x1:x2] = True
    return mask
