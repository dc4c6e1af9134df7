"""`python -m inverse_detr.analyze [ckpt=<export or run>] [analyses=[stages,cross_layer,color]]`

Runs the analyses of a trained inverse chain (default: the shipped `checkpoints/shapes-inverse`)
on a seeded fixed subset of the validation split of `data` (default: the shapes world; pass
e.g. `data=coco data.root=...` for a COCO run) and writes an output folder:
  report.html             everything below in one self-contained page
  metrics.json            every number of every analysis
  stage_mse.png  stage_reconstructions.png                 analyses=stages
  cross_layer_mse.png  cross_layer_grid.png                analyses=cross_layer
  color_pairwise.png  color_hue.png  color_saturation.png  color_ap.png
  color_reconstructions.png                                analyses=color
Images are preprocessed as the export records (size, resize mode, normalisation). Options live
under `analysis.*` (see configs/train.yaml): images, batch_size, filters, categories, min_area,
out. Checkpoints are read as safetensors + JSON only.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from inverse_detr.analysis.color import prototype_hues
from inverse_detr.analysis.report import write_report
from inverse_detr.analysis.subset import ImageSet, fixed_subset
from inverse_detr.analysis.suite import Options, Result, run_analyses, save_outputs, scalars
from inverse_detr.config import load_config
from inverse_detr.data.coco import CocoDetection
from inverse_detr.data.splits import data_splits
from inverse_detr.errors import USER_ERRORS
from inverse_detr.export import Inverter, load_inverter


@dataclass
class Setup:
    """What the analyses run on: the inverter, the val subset, the options, category names."""

    inverter: Inverter
    subset: ImageSet
    options: Options
    names: dict[int, str]


def prepare(cfg: DictConfig) -> Setup:
    """Load the inverter named by `cfg.analysis.ckpt` and the images of `cfg.data`'s val split."""
    device = "cuda" if cfg.trainer.accelerator != "cpu" and torch.cuda.is_available() else "cpu"
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
    )
    return Setup(inverter, subset, options, val.category_names())


def analyze(cfg: DictConfig) -> Path:
    """Run `cfg.analysis.analyses`; returns the output folder holding report.html."""
    setup = prepare(cfg)
    results = run_analyses(setup.inverter, setup.subset, list(cfg.analysis.analyses), setup.options)
    out = output_dir(cfg)
    sections = save_outputs(results, out, setup.names)
    intro = (
        f"Inverse chain {cfg.analysis.ckpt} against {setup.inverter.detr.name_or_path}; "
        f"{len(setup.subset)} validation images of data.kind={cfg.data.kind} (seed {cfg.seed}); "
        f"written {time.strftime('%Y-%m-%d %H:%M')}."
    )
    write_report(out / "report.html", "inverse_detr analysis", intro, sections)
    _print_summary(results, out)
    return out


def output_dir(cfg: DictConfig) -> Path:
    if cfg.analysis.out:
        return Path(cfg.analysis.out).expanduser()
    ckpt = Path(cfg.analysis.ckpt).expanduser()
    name = ckpt.parent.name if ckpt.name == "export" else ckpt.name
    return Path(cfg.out_dir).expanduser() / f"analysis-{name}"


def _print_summary(results: dict[str, Result], out: Path) -> None:
    lines = [f"  {k:<42} {v:.5g}" for k, v in scalars(results).items()]
    print("\n".join([*lines, f"report: {out / 'report.html'}"]), flush=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        analyze(load_config(sys.argv[1:] if argv is None else argv))
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
