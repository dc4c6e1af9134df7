"""`python -m inverse_detr.evaluate model=<detr> data=<shapes|coco> [key=value ...]`

Prints COCO box AP / AP50 / AP75 of a DETR on the validation split, and AP per category.
Runs on the GPU when one is present; `trainer.accelerator=cpu` (or `trainer=cpu`) keeps it on
the CPU, `trainer.accelerator=gpu` insists on the GPU.
"""

from __future__ import annotations

import json

import torch
from omegaconf import DictConfig

from inverse_detr.analysis.metrics import APScores, evaluate_detector
from inverse_detr.cli.device import inference_device
from inverse_detr.cli.shell import run_command
from inverse_detr.config import ConfigError, load_config
from inverse_detr.detectors.build import build_detr
from inverse_detr.lit.datamodule import build_datamodule


def evaluate(
    cfg: DictConfig, device: torch.device | str = "cpu"
) -> tuple[APScores, dict[int, str]]:
    """AP of `cfg.model`, run on `device`, on `cfg.data`'s validation split, and the category
    names."""
    if cfg.model.name == "random":
        raise ConfigError("evaluate needs a trained DETR: model=<directory or hub id>")
    detr = build_detr(cfg.model, cfg.seed).to(device)
    datamodule = build_datamodule(cfg.data, cfg.model.name)
    dataset = datamodule.dataset("val")
    scores = evaluate_detector(detr, datamodule.val_dataloader())
    return scores, dataset.category_names()


def format_scores(scores: APScores, names: dict[int, str]) -> str:
    lines = [f"AP {scores.ap:.4f}   AP50 {scores.ap50:.4f}   AP75 {scores.ap75:.4f}"]
    for cid, ap in sorted(scores.per_category.items()):
        lines.append(f"  {cid:>3} {names.get(cid, '?'):<14} AP {ap:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_command(_evaluate, argv, __doc__)


def _evaluate(args: list[str]) -> None:
    cfg = load_config(args)
    scores, names = evaluate(cfg, inference_device(cfg, args))
    print(format_scores(scores, names))
    print(json.dumps({"ap": scores.ap, "ap50": scores.ap50, "ap75": scores.ap75}))
