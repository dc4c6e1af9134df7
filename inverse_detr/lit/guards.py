"""What a training step does with a NaN or inf loss (`trainer.on_nonfinite`).

stop: raise `NonFiniteLossError` naming the step and the stage, before the optimiser step, so the
      weights and the last checkpoint stay finite.
skip: the step returns a zero loss that touches every trainable parameter (DDP's gradient
      reduction still meets every rank), then `drop_gradients` removes those zero gradients
      before the optimiser step, so Adam leaves parameters *and* moments untouched; the batch is
      counted as `train/nonfinite_batches`.
All ranks take the same decision, so DDP ranks never drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import lightning.pytorch as pl
import torch
from torch import nn

from inverse_detr.errors import UserError

log = logging.getLogger(__name__)
POLICIES = ("stop", "skip")


class NonFiniteLossError(UserError, RuntimeError):
    """A NaN or inf training loss under on_nonfinite=stop; the message is one line."""


def nonfinite_parts(losses: Mapping[str, torch.Tensor]) -> str:
    """'encoder (nan), head (inf)': the parts that are not finite (reads them: failure path)."""
    bad = [f"{name} ({value.item():g})" for name, value in losses.items() if not value.isfinite()]
    return ", ".join(bad) or "another rank's loss"


class NonFiniteGuard:
    """Checks a step's losses together: one host sync per step, however many stages."""

    def __init__(self, policy: str = "stop") -> None:
        if policy not in POLICIES:
            raise ValueError(f"on_nonfinite must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.policy = policy
        self.skipping = False

    def passes(self, module: pl.LightningModule, losses: Mapping[str, torch.Tensor]) -> bool:
        """True when every loss is finite on every rank; otherwise stop or mark a skip."""
        finite = bool(torch.stack([v.detach().float() for v in losses.values()]).isfinite().all())
        if module._trainer is not None:
            finite = module.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return True
        where = f"non-finite loss at step {module.global_step} in {nonfinite_parts(losses)}"
        if self.policy == "stop":
            raise NonFiniteLossError(f"{where}; trainer.on_nonfinite=skip skips such batches")
        log.warning("skipping the batch: %s", where)
        module.log("train/nonfinite_batches", 1.0, reduce_fx="sum", on_step=False, on_epoch=True)
        self.skipping = True
        return False

    def drop_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Before the optimiser step: a skipped batch leaves no gradient to step on."""
        if self.skipping:
            optimizer.zero_grad(set_to_none=True)
            self.skipping = False


def zero_loss(module: nn.Module) -> torch.Tensor:
    """A 0 that touches every trainable parameter: what a step with no usable image returns,
    so that DDP's gradient reduction still meets every rank (returning None would hang it)."""
    return sum(p.sum() for p in module.parameters() if p.requires_grad) * 0.0
