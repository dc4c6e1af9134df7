"""`python -m inverse_detr.analyze [ckpt=<export or run>] [analyses=[stages,cross_layer,color]]`

Analyses: stages, cross_layer, color (the default set), grayscale, errors, chains, spectrum and
interiors (run when named, e.g. `analyses=[grayscale,errors]`; chains compares `ckpt` with the
chains of `analysis.compare=[...]` on the same images; spectrum splits each stage's error into
spatial frequency bands; interiors asks per category whether the pattern inside the objects is
kept or only their colour, and where the error lives).

Runs the analyses of a trained inverse chain (default: the shipped `checkpoints/shapes-inverse`)
on a seeded fixed subset of the validation split of `data` (default: the shapes world; pass
e.g. `data=coco data.root=...` for a COCO run) and writes an output folder:
  report.html             everything below in one self-contained page
  metrics.json            every number of every analysis
  stage_mse.png  stage_reconstructions.png                 analyses=stages
  cross_layer_mse.png  cross_layer_grid.png                analyses=cross_layer
  color_pairwise.png  color_hue.png  color_saturation.png  color_ap.png
  color_reconstructions.png                                analyses=color
  grayscale_mse.png  grayscale_hue.png  grayscale_saturation.png  grayscale_ap.png
  grayscale_reconstructions.png                            analyses=grayscale
  errors_in_mask.png  errors_false_positives.png (when any)  errors_missed.png (when any)
                                                           analyses=errors
  chains_reconstructions.png                               analyses=chains
  spectrum_kept.png                                        analyses=spectrum
  interiors_kept.png                                       analyses=interiors
When `ckpt` is a training run folder (its config.yaml beside export/), the data settings are
the run's; `data.*` keys on the command line win key by key, and `data=NAME` or `experiment=`
takes the data section from the command line alone. Images are preprocessed as the export
records (size, resize mode, normalisation). Options live under `analysis.*` (see
configs/train.yaml): images, batch_size, filters, categories, min_area, out. Runs on the GPU
when one is present (`trainer.accelerator=cpu`: the CPU). Checkpoints are read as
safetensors + JSON only.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from inverse_detr.analysis.color import prototype_hues
from inverse_detr.analysis.report import write_report
from inverse_detr.analysis.setup import Setup, chain_label, prepare
from inverse_detr.analysis.suite import Result, run_analyses, save_outputs, scalars
from inverse_detr.cli.device import inference_device
from inverse_detr.cli.shell import run_command
from inverse_detr.config import given_keys, load_config
from inverse_detr.data.coco import CocoDetection
from inverse_detr.data.splits import data_splits
from inverse_detr.detectors.detr import local_dir


def analyze(cfg: DictConfig, device: torch.device | str = "cpu") -> Path:
    """Run `cfg.analysis.analyses` on `device`; returns the output folder holding report.html."""
    setup = prepare(cfg, device)
    if "grayscale" in cfg.analysis.analyses and not setup.options.prototypes:
        setup.options.prototypes = train_prototypes(cfg, setup)
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


def train_prototypes(cfg: DictConfig, setup: Setup) -> dict[int, float]:
    """Category id → prototype hue from the train split of `cfg.data` (what `prepare` computes
    for the colour analysis alone)."""
    train_split, _ = data_splits(cfg.data)
    train = CocoDetection(train_split.images, train_split.annotations, setup.inverter.transform)
    return prototype_hues(train, seed=cfg.seed)


def output_dir(cfg: DictConfig) -> Path:
    if cfg.analysis.out:
        return Path(cfg.analysis.out).expanduser()
    name = chain_label(str(Path(cfg.analysis.ckpt).expanduser()))
    return Path(cfg.out_dir).expanduser() / f"analysis-{name}"


def _print_summary(results: dict[str, Result], out: Path) -> None:
    lines = [f"  {k:<42} {v:.5g}" for k, v in scalars(results).items()]
    print("\n".join([*lines, f"report: {out / 'report.html'}"]), flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_command(_analyze, argv, __doc__)


def _analyze(args: list[str]) -> None:
    cfg = analysis_config(args)
    analyze(cfg, inference_device(cfg, args))


def analysis_config(args: list[str]) -> DictConfig:
    """The config for `args`, with the data section of the training run `ckpt` names (if it
    names one) under the command line's `data.*` keys; `data=` or `experiment=` on the command
    line keeps the run's data section out. Says on stdout where the data settings came from."""
    cfg = load_config(args)
    run_config = saved_run_config(cfg.analysis.ckpt)
    if run_config is None:
        return cfg
    keys = given_keys(args)
    if {"data", "experiment"} & set(keys):
        print(f"data settings from the command line, not from {run_config}", flush=True)
        return cfg
    cfg = load_config(args, run_config=run_config)
    data, ours = cfg.data, [k for k in keys if k.startswith("data.")]
    where = f"root={data.root}" if data.kind == "coco" else f"cache_dir={data.cache_dir}"
    mine = f"; from the command line: {', '.join(ours)}" if ours else ""
    print(f"data settings from {run_config} (kind={data.kind}, {where}){mine}", flush=True)
    return cfg


def saved_run_config(ckpt: str) -> Path | None:
    """The config.yaml of the training run `ckpt` points at (the run folder or its export/),
    None for an export alone."""
    path = local_dir(ckpt)
    if path is None:
        return None
    run = path.parent if path.name == "export" else path
    found = run / "config.yaml"
    return found if found.is_file() and (run / "export").is_dir() else None
