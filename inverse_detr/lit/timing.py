"""Lightning's side of the benchmark: a `fit` whose steps are timed, with the other rows called
between them (see `inverse_detr.bench`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from inverse_detr.bench.timing import PeakMemory, Probe, call_once, synchronize
from inverse_detr.data.batch import Batch


class RoundRobin(Callback):
    """Times each step of a Lightning `fit` as the probe `step` and, after each step, calls
    every other probe once: a round. The first `warmup` rounds are untimed.

    Interleaving makes every row see the same background load, so that ratios between rows
    hold on a shared machine where load comes and goes (seen here: one frozen forward took
    1.7 s, then 7.1 s twenty minutes later); load that moves within a round still shows, which
    more rounds (`repeats=`) even out.
    """

    def __init__(
        self,
        step: Probe,
        others: list[Probe],
        warmup: int,
        device: torch.device,
        on_round: Callable[[int], None] | None = None,
    ) -> None:
        self.step, self.others, self.warmup, self.device = step, others, warmup, device
        self.on_round = on_round
        self.rounds = 0
        self._memory = PeakMemory(device)
        self._start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        self._memory.__enter__()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        synchronize(self.device)
        elapsed = time.perf_counter() - self._start
        self._memory.__exit__(None, None, None)
        timed = self.rounds >= self.warmup
        self.step.record(elapsed if timed else None, self._memory.mb)
        for probe in self.others:
            call_once(probe, self.device, timed)
        if self.on_round is not None:
            self.on_round(self.rounds)
        self.rounds += 1


def fit_rounds(
    module: pl.LightningModule,
    batch: Batch,
    rounds: RoundRobin,
    bf16: bool,
    steps: int,
    device: torch.device,
) -> None:
    """(c) Lightning trains `module` on `batch` for `steps` steps, `rounds` timing them and
    calling the other rows between them; returns after the last round."""
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if bf16 else "32-true",
        max_steps=steps,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[rounds],
    )
    # the same batch each step: batch_size=None hands it over as is
    loader = DataLoader([batch] * steps, batch_size=None, collate_fn=_as_is)
    trainer.fit(module, train_dataloaders=loader)


def _as_is(batch: Batch) -> Batch:
    return batch
