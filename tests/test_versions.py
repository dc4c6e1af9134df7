"""The dependency floors pyproject.toml declares are ones the code works with."""

from __future__ import annotations

import inspect
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser from PyPI (the dev extra)
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# package → (the oldest release the code works with, what needs it)
NEEDS = {
    "lightning": ("2.6", "Trainer.fit(weights_only=True) when resuming"),
    "transformers": ("5.0", "the DETR taps model.model.position_embedding and feature_info"),
    "torch": ("2.4", "fused Adam/AdamW on CPUs"),
    "torchmetrics": ("1.4", "MeanAveragePrecision with the pycocotools backend"),
}


def floors() -> dict[str, Version]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    out = {}
    for dep in deps:
        req = Requirement(dep)
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
        if lows:
            out[req.name] = max(lows)
    return out


@pytest.mark.parametrize("package", list(NEEDS))
def test_declared_floor_is_not_below_what_the_code_needs(package):
    needed, why = NEEDS[package]
    declared = floors().get(package)
    assert declared is not None, f"pyproject.toml declares no floor for {package}"
    assert declared >= Version(needed), f"{package}>={declared}, but {why} needs {needed}"


def test_installed_versions_meet_every_declared_floor():
    low = {p: f for p, f in floors().items() if Version(version(p)) < f}
    assert not low, f"installed below the declared floors: {low}"


def test_the_features_behind_the_floors_exist():
    """Ties NEEDS to the code: the installed releases have what the table says is needed."""
    import lightning.pytorch as pl
    from transformers import DetrConfig
    from transformers.models.detr.modeling_detr import DetrModel

    assert "weights_only" in inspect.signature(pl.Trainer.fit).parameters
    config = DetrConfig(
        use_timm_backbone=True, backbone="resnet18", use_pretrained_backbone=False, d_model=32
    )
    model = DetrModel(config)
    assert hasattr(model, "position_embedding")
    assert hasattr(model.backbone, "model") and hasattr(model.backbone.model, "feature_info")
