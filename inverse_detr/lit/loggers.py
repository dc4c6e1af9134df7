"""Experiment loggers: W&B (offline unless the user is logged in), CSV, or none."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger


def wandb_logged_in() -> bool:
    """True when W&B has credentials: WANDB_API_KEY or a `wandb login` entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def build_logger(kind: str, run_dir: Path, project: str, name: str) -> Logger | None:
    """kind: wandb | csv | none. W&B runs offline (synced later with `wandb sync`) unless the
    user is logged in or sets WANDB_MODE themselves; the key is never written anywhere."""
    if kind == "none":
        return None
    if kind == "csv":
        keep_csv_history(run_dir / "csv")
        return CSVLogger(run_dir, name="csv", version="")
    if kind == "wandb":
        offline = "WANDB_MODE" not in os.environ and not wandb_logged_in()
        run_dir.mkdir(parents=True, exist_ok=True)
        return WandbLogger(project=project, name=name, save_dir=str(run_dir), offline=offline)
    raise ValueError(f"unknown logger {kind!r}; allowed: wandb, csv, none")


def keep_csv_history(csv_dir: Path) -> Path | None:
    """Lightning's CSVLogger deletes an existing `metrics.csv` (a resumed run would lose every
    epoch before it): move it to the next free `metrics.part-N.csv` first. Returns that path."""
    metrics = csv_dir / "metrics.csv"
    if not metrics.is_file():
        return None
    n = 1
    while (kept := csv_dir / f"metrics.part-{n}.csv").exists():
        n += 1
    return metrics.rename(kept)


def finish_logger(logger: Logger | None) -> None:
    """End the logger's run. Lightning leaves a W&B run open, and the next run in the same
    process (each λ of a sweep, a notebook's second run) would log into it."""
    if isinstance(logger, WandbLogger) and logger._experiment is not None:
        logger.experiment.finish()
