"""The λ sweep of joint mode: one run per λ, then a table and a plot of reconstruction MSE vs AP.

`python -m inverse_detr.train experiment=joint sweep.lambda=[0,0.5,0.9,0.99]` writes
  <out_dir>/<run_name>/lambda-<λ>/    one ordinary joint run folder each
  <out_dir>/<run_name>/sweep.csv      λ, val/ap, val/ap50, val/ap75, val/rec_mse
  <out_dir>/<run_name>/sweep.md       the same as a Markdown table
  <out_dir>/<run_name>/sweep.png      reconstruction MSE vs AP, one point per λ
At λ = 0 nothing trains the inverse chain (its loss weight is 0), so that row's MSE is the
untrained chain's: start from trained inverse modules with joint.init_inverse=<export>.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from inverse_detr.analysis.plots import tradeoff_plot

if TYPE_CHECKING:
    from inverse_detr.lit.run import RunResult

COLUMNS = ("val/ap", "val/ap50", "val/ap75", "val/rec_mse")
SWEEP_NAME_ENV = "INVERSE_DETR_SWEEP_NAME"


def run_lambda_sweep(cfg: DictConfig, run: Callable[[DictConfig], RunResult]) -> Path:
    """Call `run` once per λ of `cfg.sweep.lambdas`; returns the sweep folder.

    Under DDP every rank runs the loop (each `run` is collective); rank 0 writes the table.
    """
    inherited = os.environ.get(SWEEP_NAME_ENV) if int(os.environ.get("LOCAL_RANK", 0)) else ""
    name = cfg.run_name or inherited or time.strftime("sweep-%Y%m%d-%H%M%S")
    os.environ[SWEEP_NAME_ENV] = name  # DDP ranks re-launched by Lightning inherit it
    sweep_dir = Path(cfg.out_dir).expanduser() / name
    rows = []
    for lam in cfg.sweep.lambdas:
        one = OmegaConf.merge(
            cfg,
            {"run_name": f"{name}/lambda-{lam:g}", "joint": {"lam": lam}, "sweep": {"lambdas": []}},
        )
        metrics = run(one).metrics
        rows.append({"lambda": lam, **{k: metrics.get(k, float("nan")) for k in COLUMNS}})
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        _report(rows, sweep_dir)
    return sweep_dir


def _report(rows: list[dict], sweep_dir: Path) -> None:
    write_table(rows, sweep_dir)
    figure = tradeoff_plot(
        [r["val/rec_mse"] for r in rows],
        [r["val/ap"] for r in rows],
        [f"λ={r['lambda']:g}" for r in rows],
    )
    figure.savefig(sweep_dir / "sweep.png", dpi=120)
    print((sweep_dir / "sweep.md").read_text(), flush=True)


def write_table(rows: list[dict], sweep_dir: Path) -> None:
    """sweep.csv and sweep.md in `sweep_dir`."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    header = ["lambda", *COLUMNS]
    with open(sweep_dir / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(f"{r[k]:.4g}" for k in header) + " |" for r in rows]
    (sweep_dir / "sweep.md").write_text("\n".join(lines) + "\n")
