"""`python -m inverse_detr.evaluate model=<detector> data=<shapes|coco> [key=value ...]`

Evaluates any detector — a DETR directory or hub id, or a project detector directory
(RetinaNet, FCOS, Faster R-CNN, Mask R-CNN: `detector.json`) — on the validation split: COCO box
AP / AP50 / AP75, AP per category, AP per size bucket (the data's own buckets when its COCO file
records them in `info.area_buckets`, as the shapes world does; COCO's otherwise), and mask AP
for detectors with masks. The last line is JSON: {"ap", "ap50", "ap75", "ap_small", ...,
"mask_ap", "mask_ap50"}. Runs on the GPU when one is present; `trainer.accelerator=cpu` (or
`trainer=cpu`) keeps it on the CPU, `trainer.accelerator=gpu` insists on the GPU.
"""

from __future__ import annotations

import json

import torch
from omegaconf import DictConfig

from inverse_detr.analysis.evaluation import Evaluation, buckets_of, evaluate_any
from inverse_detr.cli.device import inference_device
from inverse_detr.cli.shell import run_command
from inverse_detr.config import ConfigError, load_config
from inverse_detr.detectors.loading import load_detector
from inverse_detr.lit.datamodule import build_datamodule


def evaluate(cfg: DictConfig, device: torch.device | str = "cpu") -> tuple[Evaluation, dict]:
    """The evaluation of `cfg.model` on `cfg.data`'s validation split, and category names."""
    if cfg.model.name == "random":
        raise ConfigError("evaluate needs a trained detector: model=<directory or hub id>")
    detector = load_detector(cfg.model.name, device)
    datamodule = build_datamodule(cfg.data, cfg.model.name, with_masks=True)
    dataset = datamodule.dataset("val")
    unknown = sorted(set(dataset.categories) - set(detector.categories))
    if unknown:
        raise ConfigError(
            f"{cfg.model.name} knows categories {sorted(detector.categories)}, but "
            f"{dataset.coco_file} has {unknown} too: a detector trained for other data"
        )
    transform = datamodule.transform
    buckets = buckets_of(dataset.coco.dataset.get("info", {}))
    result = evaluate_any(
        detector, datamodule.val_dataloader(), transform.mean, transform.std, buckets
    )
    return result, dataset.category_names()


def format_scores(result: Evaluation, names: dict[int, str]) -> str:
    box = result.box
    lines = [f"AP {box.ap:.4f}   AP50 {box.ap50:.4f}   AP75 {box.ap75:.4f}"]
    if result.mask_ap is not None:
        lines.append(f"mask AP {result.mask_ap:.4f}   mask AP50 {result.mask_ap50:.4f}")
    if result.by_size:
        lines.append("AP by size: " + "   ".join(f"{k} {v:.4f}" for k, v in result.by_size.items()))
    for cid, ap in sorted(box.per_category.items()):
        lines.append(f"  {cid:>3} {names.get(cid, '?'):<14} AP {ap:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_command(_evaluate, argv, __doc__)


def _evaluate(args: list[str]) -> None:
    cfg = load_config(args)
    result, names = evaluate(cfg, inference_device(cfg, args))
    print(format_scores(result, names))
    print(json.dumps(result.summary()))
