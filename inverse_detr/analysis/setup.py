"""Config → what the analyses run on: the inverter, a fixed val subset, the options, names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from inverse_detr.analysis.color import prototype_hues
from inverse_detr.analysis.subset import ImageSet, fixed_subset
from inverse_detr.analysis.suite import Options
from inverse_detr.data.coco import CocoDetection
from inverse_detr.data.splits import data_splits
from inverse_detr.export import Inverter, load_inverter


@dataclass
class Setup:
    """What the analyses run on: the inverter, the val subset, the options, category names."""

    inverter: Inverter
    subset: ImageSet
    options: Options
    names: dict[int, str]


def prepare(cfg: DictConfig, device: torch.device | str = "cpu") -> Setup:
    """Load the inverter named by `cfg.analysis.ckpt` onto `device` and the images of
    `cfg.data`'s val split."""
    inverter = load_inverter(cfg.analysis.ckpt, device=device)
    train_split, val_split = data_splits(cfg.data)
    val = CocoDetection(val_split.images, val_split.annotations, inverter.transform)
    subset = fixed_subset(val, cfg.analysis.images, cfg.seed)
    prototypes = {}
    if "color" in cfg.analysis.analyses:
        train = CocoDetection(train_split.images, train_split.annotations, inverter.transform)
        prototypes = prototype_hues(train, seed=cfg.seed)
    options = Options(
        prototypes,
        tuple(cfg.analysis.filters),
        list(cfg.analysis.categories) or None,
        cfg.analysis.min_area,
        cfg.analysis.batch_size,
        name=chain_label(cfg.analysis.ckpt),
    )
    if "chains" in cfg.analysis.analyses:
        for ckpt in cfg.analysis.compare:
            label, n = chain_label(ckpt), 1
            while label in {options.name, *options.others}:  # two folders of the same name
                n += 1
                label = f"{chain_label(ckpt)} ({n})"
            options.others[label] = load_inverter(ckpt, device=device)
    return Setup(inverter, subset, options, val.category_names())


def chain_label(ckpt: str) -> str:
    """A chain's name in tables: its folder's name (the run's for an `export/` folder)."""
    path = Path(ckpt)
    return path.parent.name if path.name == "export" else path.name
