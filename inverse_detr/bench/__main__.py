"""`python -m inverse_detr.bench`: see `inverse_detr.bench.training` for what it measures."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch

from inverse_detr.bench.config import bench_config, parse_args
from inverse_detr.bench.layout import print_layout, run_layout_bench
from inverse_detr.bench.report import print_tables
from inverse_detr.bench.training import resolve_device, run_bench
from inverse_detr.config import load_config
from inverse_detr.errors import USER_ERRORS


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # a Trainer per variant
    try:
        settings, overrides = parse_args(sys.argv[1:] if argv is None else argv)
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
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = report["machine"]["device"]
    out = Path(settings.out or f"runs/bench/{settings.config}-{device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    (print_layout if settings.config == "layout" else print_tables)(report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
