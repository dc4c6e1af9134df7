"""Shared fixtures: a tiny random DETR saved offline, and paths to the real coco128 sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from inverse_detr.config import CACHE_ENV
from inverse_detr.detectors.detr import detr_signature, random_detr
from inverse_detr.inverse.chain import STAGES
from inverse_detr.inverse.spec import ChainSpec

COCO128 = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128"


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `gpu` are skipped, with the reason, where no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Path:
    """The suite never writes into the user's cache: generated worlds go to a temporary
    folder, for this process and every command, notebook kernel or DDP rank it starts."""
    cache = tmp_path_factory.mktemp("inverse-detr-cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(cache)
    yield cache
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(scope="session")
def tiny_detr_dir(tmp_path_factory) -> Path:
    """A tiny random DETR (resnet10t, d 32, 1+2 layers, 5 queries, COCO ids), save_pretrained."""
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
        num_labels=91,
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


@pytest.fixture(scope="session")
def shapes_cache(tmp_path_factory) -> Path:
    """A cache folder shared by tests that generate the tiny shapes world."""
    return tmp_path_factory.mktemp("shapes-cache")


@pytest.fixture
def tiny_overrides(shapes_cache, tmp_path) -> list[str]:
    """Overrides that shrink the default run to seconds: a tiny world, DETR and inverse chain."""
    return [
        f"out_dir={tmp_path / 'runs'}",
        "run_name=tiny",
        "logger=none",
        "model.name=random",
        f"data.cache_dir={shapes_cache}",
        "data.shapes.train=8",
        "data.shapes.val=4",
        "data.shapes.size=64",
        "data.image_size=[64,64]",
        "data.batch_size=4",
        "data.num_workers=0",
        "model.random.d_model=32",
        "model.random.encoder_layers=1",
        "model.random.decoder_layers=1",
        "model.random.attention_heads=2",
        "model.random.ffn_dim=64",
        "model.random.num_queries=5",
        "inverse.backbone_hidden=[16]",
        "inverse.backbone_up=[16,8,8,8]",
        "inverse.head_hidden=[32]",
        "trainer.fast_dev_run=true",
        "trainer.precision=32-true",  # reproducible runs (auto times the step: test_precision.py)
        "analysis.every_n_epochs=0",  # the analysis callbacks have their own tests
    ]


@pytest.fixture(scope="session")
def tiny_spec():
    """Builds the tiny ChainSpec the tests train, for a given DETR and stages."""

    def build(detr, stages=STAGES) -> ChainSpec:
        return ChainSpec(
            **detr_signature(detr),
            stages=tuple(stages),
            backbone_hidden=(16,),
            backbone_up=(16, 8, 8, 8),
            encoder_layers=1,
            encoder_heads=2,
            encoder_ffn=64,
            decoder_layers=1,
            decoder_heads=2,
            decoder_ffn=64,
            head_hidden=(32,),
        )

    return build
