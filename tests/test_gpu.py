"""Training on one CUDA device: bf16-mixed, torch.compile, DDP with one rank. Marked `gpu`
(`pytest -m gpu`, `make gpu-check`); skipped where no CUDA device is available (conftest.py)."""

import math

import pytest
import torch
from ddp_probe import run_probe
from lightning.pytorch.callbacks import Callback

from inverse_detr.config import load_config
from inverse_detr.lit.run import run

pytestmark = pytest.mark.gpu

STEPS = 3


def gpu_overrides(tiny_overrides: list[str], *extra: str) -> list[str]:
    """The tiny run on one CUDA device, `STEPS` optimiser steps instead of fast_dev_run's one."""
    kept = [o for o in tiny_overrides if not o.startswith("trainer.fast_dev_run")]
    steps = [f"trainer.max_steps={STEPS}", "trainer.limit_val_batches=1"]
    return ["trainer=gpu", *kept, "trainer.devices=1", *steps, *extra]


class StepRecorder(Callback):
    """Every training step's loss, the module's device and whether torch.compile applied."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.devices: set[str] = set()
        self.compiled = False

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        self.devices.add(module.device.type)
        compiled = (getattr(m, "_compiled_call_impl", None) for m in module.modules())
        self.compiled = self.compiled or any(c is not None for c in compiled)


def train(overrides: list[str]) -> tuple[dict[str, float], StepRecorder]:
    recorder = StepRecorder()
    result = run(load_config(overrides), callbacks=[recorder])
    return result.metrics, recorder


def assert_finite(metrics: dict[str, float], recorder: StepRecorder) -> None:
    assert len(recorder.losses) == STEPS and recorder.devices == {"cuda"}
    assert all(math.isfinite(x) for x in recorder.losses), recorder.losses
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics


def test_bf16_mixed_training_on_one_gpu_has_finite_losses(tiny_overrides):
    metrics, recorder = train(gpu_overrides(tiny_overrides, "trainer.precision=bf16-mixed"))
    assert_finite(metrics, recorder)
    assert not recorder.compiled


def test_compiled_training_on_one_gpu_has_finite_losses(tiny_overrides):
    overrides = gpu_overrides(tiny_overrides, "trainer.compile=true", "trainer.precision=32-true")
    metrics, recorder = train(overrides)
    assert_finite(metrics, recorder)
    assert recorder.compiled


def test_ddp_with_one_gpu_trains_and_saves_finite_weights(tiny_overrides, tmp_path):
    """A subprocess (tests/ddp_probe.py), so that the NCCL process group dies with it."""
    overrides = gpu_overrides(tiny_overrides, "trainer.strategy=ddp")
    ranks = run_probe(tmp_path, overrides, timeout=240)
    assert len(ranks) == 1
    rank0 = ranks[0]
    assert rank0["steps"] == STEPS
    assert all(math.isfinite(v) for v in rank0["metrics"].values()), rank0["metrics"]
    for key, value in rank0["state"].items():
        assert torch.isfinite(value.float()).all(), key
