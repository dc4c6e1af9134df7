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

import time
from pathlib import Path

from omegaconf import DictConfig

from inverse_detr.analysis.report import write_report
from inverse_detr.analysis.setup import prepare
from inverse_detr.analysis.suite import Result, run_analyses, save_outputs, scalars
from inverse_detr.cli.shell import run_command
from inverse_detr.config import load_config


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
    return run_command(_analyze, argv, __doc__)


def _analyze(args: list[str]) -> None:
    analyze(load_config(args))
