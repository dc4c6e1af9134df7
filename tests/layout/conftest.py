"""Tiny random classic detectors for the layout tests."""

import pytest
import torch

from inverse_detr.detectors.classic import ClassicDetector, ClassicSpec, build_classic

SIZE = (64, 64)


@pytest.fixture(scope="module")
def tiny_classic():
    """family → a tiny random detector of that family for 64 px canvases, frozen, made anew."""

    def make(family: str) -> ClassicDetector:
        torch.manual_seed(0)
        spec = ClassicSpec(family, {1: "circle", 2: "square", 3: "triangle"}, image_size=SIZE[0])
        return ClassicDetector(build_classic(spec).eval().requires_grad_(False), spec)

    return make
