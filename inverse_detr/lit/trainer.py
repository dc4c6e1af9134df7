"""The Lightning Trainer every training run uses, and the run folder it writes into."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from omegaconf import DictConfig

from inverse_detr.lit.checkpointing import AtomicCheckpointIO, ResumeCheckpoint
from inverse_detr.lit.loggers import build_logger

RUN_NAME_ENV = "INVERSE_DETR_RUN_NAME"  # shared by DDP ranks, which Lightning re-launches


def run_dir_for(cfg: DictConfig) -> Path:
    """The run folder. Lightning re-launches DDP ranks > 0 as new processes: they read the
    name rank 0 chose from the environment (only they do, so a notebook's next run is new)."""
    inherited = os.environ.get(RUN_NAME_ENV) if int(os.environ.get("LOCAL_RANK", 0)) > 0 else ""
    name = cfg.run_name or inherited or time.strftime("%Y%m%d-%H%M%S")
    os.environ[RUN_NAME_ENV] = name
    return Path(cfg.out_dir).expanduser() / name


def build_trainer(
    cfg: DictConfig,
    run_dir: Path,
    callbacks: list[Callback],
    monitor: str | None,
    monitor_mode: str = "min",
    own_samplers: bool = False,
    precision: str | None = None,
) -> pl.Trainer:
    """monitor: the metric that picks the exported checkpoint (None: the last epoch's);
    own_samplers: the data module brings its distributed samplers (Lightning keeps its
    hands off them); precision: what `trainer.precision=auto` resolved to (None: the config's)."""
    t = cfg.trainer
    logger = build_logger(cfg.logger, run_dir, cfg.wandb_project, os.environ[RUN_NAME_ENV])
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{epoch}-{step}",
        monitor=monitor,
        mode=monitor_mode,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,  # last.ckpt is also written by ResumeCheckpoint
    )
    resume = ResumeCheckpoint(run_dir / "checkpoints" / "last.ckpt", t.checkpoint_every_n_steps)
    extra = [LearningRateMonitor("step")] if logger else []
    if t.keep_every_n_steps:  # the weights along the run, for `average` (weight averaging)
        extra.append(
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="step-{step}",
                every_n_train_steps=t.keep_every_n_steps,
                save_top_k=-1,
                save_weights_only=True,
                auto_insert_metric_name=False,
            )
        )
    # the bar reads its metrics with .item(), a host sync on GPUs: refresh only as often as
    # the logger writes, so that steps in between queue without waiting for the device
    extra.append(TQDMProgressBar(refresh_rate=t.log_every_n_steps))
    devices = int(t.devices) if t.devices.isdigit() else t.devices
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=precision or t.precision,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        max_time=t.max_time or None,
        limit_train_batches=_count_or_fraction(t.limit_train_batches),
        limit_val_batches=_count_or_fraction(t.limit_val_batches),
        val_check_interval=_count_or_fraction(t.val_check_interval),
        log_every_n_steps=t.log_every_n_steps,
        gradient_clip_val=t.gradient_clip_val or None,
        fast_dev_run=t.fast_dev_run,
        logger=logger or False,
        callbacks=[checkpoints, resume, *extra, *callbacks],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=run_dir,
        deterministic=False,
        use_distributed_sampler=not own_samplers,
    )


def _count_or_fraction(value: float) -> int | float:
    """Lightning reads 1.0 as 'all' and 1 as 'one batch': whole numbers > 1 mean counts."""
    return int(value) if value > 1 else value
