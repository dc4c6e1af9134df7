"""`python -m inverse_detr.train [experiment=NAME] [group=name] [key=value ...]`

mode=inversion (default) trains the inverse modules against a frozen DETR; mode=joint
(experiment=joint, experiment=shapes_detector) fine-tunes DETR and the inverse chain together;
sweep.lambda=[...] runs one joint run per λ (see `inverse_detr.lit.sweep`). One run folder:
  config.yaml              the resolved config
  checkpoints/             last.ckpt (epoch ends, every trainer.checkpoint_every_n_steps
                           steps, SIGTERM) and the best (val/geomean_mse; joint: val/ap50);
                           step-<N>.ckpt every trainer.keep_every_n_steps (weights, `average`)
  export/                  inverse modules as safetensors + JSON (see `load_inverter`)
  detr/                    joint mode: the fine-tuned DETR in save_pretrained form
  reconstructions.png      input | from backbone | encoder | decoder | head
  metrics.json             the final validation metrics of the exported weights
  analysis/epoch-N/ final/ the analyses' figures, metrics.json and report.html (every
                           analysis.every_n_epochs validation epochs; inverse_detr.lit.callbacks)
  wandb/ or csv/           the logger's files
Exit codes: 0 done; 2 unusable input or config (one `error:` line on stderr); 143 stopped by
SIGTERM after saving last.ckpt (one `stopped:` line saying how to resume).
"""

from __future__ import annotations

import logging

from inverse_detr.cli.shell import run_command
from inverse_detr.config import load_config
from inverse_detr.lit.run import run
from inverse_detr.lit.sweep import run_lambda_sweep


def main(argv: list[str] | None = None) -> int:
    return run_command(_train, argv, __doc__, level=logging.INFO)


def _train(args: list[str]) -> None:
    cfg = load_config(args)
    if cfg.sweep.lambdas:
        run_lambda_sweep(cfg, run)
    else:
        run(cfg)
