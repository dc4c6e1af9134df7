"""Shared fixtures: a tiny random DETR saved offline, and paths to the real coco128 sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inverse_detr.detr import random_detr

COCO128 = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128"


@pytest.fixture(scope="session")
def tiny_detr_dir(tmp_path_factory) -> Path:
    """A tiny random DETR (timm resnet10t, d 32, 1+1 layers, 5 queries) in save_pretrained form."""
    torch.manual_seed(0)
    model = random_detr(
        backbone="resnet10t",
        dilation=True,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        attention_heads=2,
        ffn_dim=64,
        num_queries=5,
        num_labels=7,
    )
    path = tmp_path_factory.mktemp("tiny-detr")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def coco128() -> Path:
    """The 100 real COCO images beside the repo; tests using it skip when absent."""
    if not (COCO128 / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"real COCO sample not found at {COCO128}")
    return COCO128
