"""`python -m inverse_detr.train [experiment=NAME] [group=name] [key=value ...]`

Trains the inverse modules against a frozen DETR and leaves one run folder:
  config.yaml              the resolved config
  checkpoints/             Lightning checkpoints: last.ckpt and the best by val/loss
  export/                  inverse modules as safetensors + JSON (see `load_inverter`)
  reconstructions.png      input | from backbone | encoder | decoder | head
  wandb/ or csv/           the logger's files
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from inverse_detr.analysis.plots import reconstruction_grid
from inverse_detr.build import build_datamodule, build_detr, build_transform, chain_spec
from inverse_detr.config import ConfigError, load_config, save_config
from inverse_detr.data.coco import DataError
from inverse_detr.data.datamodule import DetectionDataModule
from inverse_detr.detr import DetrLoadError, image_normalization
from inverse_detr.export import InverterError, export_inverter
from inverse_detr.inverse.chain import REQUIRED_MODULES, STAGES
from inverse_detr.lit.inversion import InversionModule
from inverse_detr.loggers import build_logger

log = logging.getLogger("inverse_detr.train")
RUN_NAME_ENV = "INVERSE_DETR_RUN_NAME"  # shared by DDP ranks, which Lightning re-launches
USER_ERRORS = (ConfigError, DataError, DetrLoadError, InverterError)
# the frozen DETR is in eval mode on purpose; Lightning warns about it on every run
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def run_dir_for(cfg: DictConfig) -> Path:
    """The run folder; every DDP rank gets the same name through the environment."""
    name = cfg.run_name or os.environ.get(RUN_NAME_ENV) or time.strftime("%Y%m%d-%H%M%S")
    os.environ[RUN_NAME_ENV] = name
    return Path(cfg.out_dir).expanduser() / name


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[Callback]) -> pl.Trainer:
    t = cfg.trainer
    logger = build_logger(cfg.logger, run_dir, cfg.wandb_project, os.environ[RUN_NAME_ENV])
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{epoch}-{step}",
        monitor="val/loss",
        mode="min",
        save_last=True,
        auto_insert_metric_name=False,
    )
    extra = [LearningRateMonitor("step")] if logger else []
    devices = int(t.devices) if t.devices.isdigit() else t.devices
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
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
        callbacks=[checkpoints, *extra, *callbacks],
        default_root_dir=run_dir,
        deterministic=False,
    )


def _count_or_fraction(value: float) -> int | float:
    """Lightning reads 1.0 as 'all' and 1 as 'one batch': whole numbers > 1 mean counts."""
    return int(value) if value > 1 else value


def run(cfg: DictConfig, callbacks: list[Callback] | None = None) -> Path:
    """Train as `cfg` says; returns the run folder."""
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = run_dir_for(cfg)
    _on_rank_zero(save_config, cfg, run_dir / "config.yaml")
    detr = build_detr(cfg.model, cfg.seed)
    detr_name = cfg.model.name
    if detr_name == "random":  # keep the exact random DETR, so the export can be reloaded
        detr_name = "detr"
        _on_rank_zero(detr.save_pretrained, run_dir / "export" / "detr")
    spec = chain_spec(cfg.inverse, detr)
    datamodule = build_datamodule(cfg.data, cfg.model.name)
    mean, std = image_normalization(cfg.model.name)
    module = InversionModule(
        detr,
        spec,
        mean,
        std,
        lr=dict(cfg.inverse.lr),
        weight_decay=cfg.inverse.weight_decay,
        schedule=cfg.inverse.schedule,
        compile=cfg.trainer.compile,
    )
    trainer = build_trainer(cfg, run_dir, list(callbacks or []))
    trainer.fit(module, datamodule=datamodule)
    if trainer.is_global_zero:
        _load_best(module, trainer)
        export_inverter(
            module.chain,
            spec,
            build_transform(cfg.data, cfg.model.name),
            detr_name,
            run_dir / "export",
        )
        _save_grid(module, datamodule, run_dir / "reconstructions.png", trainer)
        _summary(trainer, run_dir)
    return run_dir


def _on_rank_zero(fn, *args):
    return rank_zero_only(fn)(*args)


def _load_best(module: InversionModule, trainer: pl.Trainer) -> None:
    """Export the best checkpoint's weights when there is one (not under fast_dev_run)."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state, strict=False)
        log.info("exporting the best checkpoint: %s", best)


@torch.no_grad()
def _save_grid(module: InversionModule, dm: DetectionDataModule, path: Path, trainer) -> None:
    """input | one column per stage whose whole chain was trained, on the first val images."""
    batch = next(iter(dm.val_dataloader()))
    batch = batch.to(module.device)
    batch.pixel_values, batch.pixel_mask = batch.pixel_values[:6], batch.pixel_mask[:6]
    module.eval()
    emb = module.embed(batch)
    columns = {"input": (batch.pixel_values * module.std + module.mean).clamp(0, 1)}
    for stage in STAGES:
        if set(REQUIRED_MODULES[stage]) <= set(module.stages):
            columns[f"from {stage}"] = module.chain.reconstruct(emb, stage)
    figure = reconstruction_grid(columns)
    figure.savefig(path, dpi=110)
    if trainer.logger is not None and hasattr(trainer.logger, "log_image"):
        trainer.logger.log_image("val/reconstructions", [str(path)])


def _summary(trainer: pl.Trainer, run_dir: Path) -> None:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    lines = [f"  {k:<28} {v:.5f}" for k, v in sorted(metrics.items())]
    print("\n".join([f"run folder: {run_dir}", *lines]), flush=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(sys.argv[1:] if argv is None else argv)
        run(cfg)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
