"""Run by test_ddp.py as a script (Lightning's DDP re-launches it once per extra rank).

`python tests/ddp_probe.py OUT_DIR key=value ...` trains like `inverse_detr.train`; every rank
saves its inverse weights and its view of the validation metrics to OUT_DIR/rank<r>.pt.
"""

import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from inverse_detr.config import load_config
from inverse_detr.lit.run import run


class SaveRankState(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer, module) -> None:
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        cache = getattr(module, "cache", None)
        cached = (
            {s: (c.store.ids(), c.store.hits) for s, c in cache.splits.items()} if cache else {}
        )
        torch.save(
            {"state": state, "metrics": metrics, "steps": trainer.global_step, "cached": cached},
            self.out / f"rank{trainer.global_rank}.pt",
        )


def run_probe(out: Path, overrides: list[str], timeout: int = 300) -> list[dict]:
    """Run this script on `overrides` in a subprocess (its process group, NCCL's or gloo's, dies
    with it); the states the ranks saved, in rank order."""
    result = subprocess.run(
        [sys.executable, __file__, str(out), *overrides],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(path, weights_only=True) for path in sorted(out.glob("rank*.pt"))]


if __name__ == "__main__":
    run(load_config(sys.argv[2:]), callbacks=[SaveRankState(Path(sys.argv[1]))])
