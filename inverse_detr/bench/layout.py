"""The layout-inversion benchmark: `python -m inverse_detr.bench config=layout [model=<dir>]`.

Any detector `load_detector` takes (a DETR, or a project RetinaNet / FCOS / Faster R-CNN /
Mask R-CNN directory). Times the alternating optimiser's iteration (detector forward + its
Z-step in `inversion_losses` + I-step + blur/clip, with the `layout.*` settings) with B = 1
layout and with B = `layout.batch_size` layouts (16) of `data`'s val split, in interleaved
rounds (`repeats`, after `warmup` untimed rounds) so both see the same load, and reports
layouts/s of a full inversion (the family's tuned iterations, or `layout.iterations`).
Goal (GPU): B = 16 reaches ≥ 8 × the layouts/s of B = 1. On a CPU the ratio is only reported:
there batching buys little.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from omegaconf import DictConfig

from inverse_detr.bench.timing import machine, median
from inverse_detr.config import ConfigError
from inverse_detr.data.splits import data_splits
from inverse_detr.detectors.loading import load_detector
from inverse_detr.layout.optimize import invert_layouts
from inverse_detr.layout.settings import inversion_settings
from inverse_detr.layout.targets import read_layouts

TIMED_ITERATIONS = 10  # per timing: enough to cover one periodic blur
BATCH_GOAL = 8.0


def run_layout_bench(cfg: DictConfig, device: torch.device, warmup: int, repeats: int) -> dict:
    """Seconds per iteration and layouts/s at B = 1 and B = `cfg.layout.batch_size`."""
    if cfg.model.name == "random":
        raise ConfigError("config=layout needs a trained detector: model=<directory or hub id>")
    detector = load_detector(cfg.model.name, device)
    big = cfg.layout.batch_size
    annotations = data_splits(cfg.data)[1].annotations
    known = set(detector.categories)
    layouts = read_layouts(annotations, big, known, detector.max_detections).layouts
    layouts = (layouts * big)[:big]  # a small val split repeats its layouts
    size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    full = inversion_settings(cfg.layout, cfg.seed, detector.name)
    settings = replace(full, iterations=TIMED_ITERATIONS)
    print(f"bench layout on {device}: B = 1 and {big} at {size}", flush=True)
    timings: dict[int, list[float]] = {1: [], big: []}
    for round_ in range(warmup + repeats):
        for batch_size in timings:
            result = invert_layouts(
                detector, layouts[:batch_size], size, settings, batch_size, progress=False
            )
            if round_ >= warmup:
                timings[batch_size].append(result.seconds / TIMED_ITERATIONS)
    return layout_report(timings, full.iterations, device) | {"detector": detector.name}


def layout_report(timings: dict[int, list[float]], iterations: int, device: torch.device) -> dict:
    """The JSON report: per B the median s / iteration and layouts/s of a full inversion, and
    the batching speed-up against the goal (judged on GPUs only)."""
    rows = {
        batch: {
            "seconds_per_iteration": median(seconds),
            "layouts_per_second": batch / (median(seconds) * iterations),
        }
        for batch, seconds in timings.items()
    }
    small, big = min(rows), max(rows)
    ratio = rows[big]["layouts_per_second"] / rows[small]["layouts_per_second"]
    goal = {"batch_ratio": ratio, "target": BATCH_GOAL, "met": ratio >= BATCH_GOAL}
    return {
        "config": "layout",
        "machine": machine(device),
        "iterations_per_inversion": iterations,
        "rows": {str(b): r for b, r in rows.items()},
        "goals": goal if device.type == "cuda" else {**goal, "met": None, "note": "GPU goal"},
        "written": time.strftime("%Y-%m-%d %H:%M"),
    }


def print_layout(report: dict) -> None:
    """The report as a Markdown table and the goal's verdict."""
    iterations = report["iterations_per_inversion"]
    who = report.get("detector", "")
    print(f"| {who} B | s / iteration | layouts / s ({iterations} iterations each) |")
    print("| --- | --- | --- |")
    for batch, row in report["rows"].items():
        print(f"| {batch} | {row['seconds_per_iteration']:.4f} | {row['layouts_per_second']:.4f} |")
    goal = report["goals"]
    met = {True: "met", False: "NOT met", None: "reported (GPU goal)"}[goal["met"]]
    print(f"batching speed-up {goal['batch_ratio']:.2f}× (goal ≥ {goal['target']:.0f}×): {met}")
