"""Lightning's side of the benchmark: a `fit` on one batch with hooks around each step (the
benchmark times the step in them and calls its other rows between steps)."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from inverse_detr.data.batch import Batch


class StepHooks(Callback):
    """Calls `before()` as each training step starts and `after()` as it ends."""

    def __init__(self, before: Callable[[], None], after: Callable[[], None]) -> None:
        self.before, self.after = before, after

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        self.before()

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        self.after()


def fit_timed(
    module: pl.LightningModule,
    batch: Batch,
    before: Callable[[], None],
    after: Callable[[], None],
    bf16: bool,
    steps: int,
    device: torch.device,
) -> None:
    """(c) Lightning trains `module` on `batch` for `steps` steps, `before()` and `after()`
    called around each step; returns after the last step."""
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
        callbacks=[StepHooks(before, after)],
    )
    # the same batch each step: batch_size=None hands it over as is
    loader = DataLoader([batch] * steps, batch_size=None, collate_fn=_as_is)
    trainer.fit(module, train_dataloaders=loader)


def _as_is(batch: Batch) -> Batch:
    return batch
