"""`python -m inverse_detr.bench`: `--help` prints what it measures (see `bench.training`)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import torch

from inverse_detr.bench import training
from inverse_detr.bench.config import bench_config, parse_args
from inverse_detr.bench.layout import print_layout, run_layout_bench
from inverse_detr.bench.report import print_tables
from inverse_detr.bench.training import resolve_device, run_bench
from inverse_detr.cli.shell import run_command
from inverse_detr.config import load_config


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # a Trainer per variant
    return run_command(_bench, argv, training.__doc__)


def _bench(args: list[str]) -> None:
    settings, overrides = parse_args(args)
    config = bench_config(settings.config)
    settings = replace(
        settings,
        warmup=config.warmup if settings.warmup is None else settings.warmup,
        repeats=config.repeats if settings.repeats is None else settings.repeats,
    )
    cfg = load_config([*config.overrides, *overrides])
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.config == "layout":
        device = resolve_device(settings.device)
        report = run_layout_bench(cfg, device, settings.warmup, settings.repeats)
    else:
        report = run_bench(cfg, settings)
    device = report["machine"]["device"]
    out = Path(settings.out or f"runs/bench/{settings.config}-{device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    (print_layout if settings.config == "layout" else print_tables)(report)
    print(f"wrote {out}")
