"""A tiny inverter (random DETR + random chain) and the tiny shapes world's images."""

from __future__ import annotations

import pytest
import torch

from inverse_detr.analysis.subset import ImageSet, fixed_subset
from inverse_detr.data.coco import CocoDetection
from inverse_detr.data.shapes import ensure_shapes_world
from inverse_detr.data.transforms import DetrTransform
from inverse_detr.detectors.detr import load_detr
from inverse_detr.export import Inverter
from inverse_detr.inverse.spec import build_chain


@pytest.fixture(scope="session")
def tiny_world(shapes_cache):
    """The tiny world the training tests use (8 train, 4 val images of 64 px)."""
    return ensure_shapes_world(shapes_cache, 8, 4, size=64, seed=0, num_classes=6)


@pytest.fixture(scope="session")
def tiny_inverter(tiny_detr_dir, tiny_spec) -> Inverter:
    torch.manual_seed(0)
    detr = load_detr(tiny_detr_dir)
    spec = tiny_spec(detr)
    return Inverter(detr, build_chain(spec).eval(), spec, DetrTransform((64, 64)))


@pytest.fixture(scope="session")
def val_dataset(tiny_world, tiny_inverter) -> CocoDetection:
    return CocoDetection(*tiny_world.split("val"), tiny_inverter.transform, with_masks=True)


@pytest.fixture(scope="session")
def val_images(val_dataset) -> ImageSet:
    return fixed_subset(val_dataset, 4, seed=0)
