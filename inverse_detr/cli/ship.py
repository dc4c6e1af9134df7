"""`python -m inverse_detr ship SRC DST [--fp32]` (or `inverse-detr ship ...`)

Stores a trained detector — a DETR directory (e.g. a run's `detr/`) or a project detector
(a run's `detector/`) — or an inverse chain (an inverter export, e.g. a run's `export/` or the
run folder) as a checkpoint to ship in `checkpoints/`: fp16 safetensors (half the size; loaded
back as float32), the image statistics (a DETR also drops its BatchNorm counters; a chain keeps
its `inverter.json`, the DETR it names rewritten to resolve from DST). `--fp32` keeps full
precision. Re-measure the stored weights afterwards: `python -m inverse_detr.evaluate
model=DST` for a detector, `python -m inverse_detr.analyze analysis.ckpt=DST` for a chain.
"""

from __future__ import annotations

from pathlib import Path

from inverse_detr.cli.shell import run_command
from inverse_detr.config import ConfigError
from inverse_detr.detectors.classic import ClassicDetector
from inverse_detr.detectors.detr import save_detr
from inverse_detr.detectors.loading import load_detector, save_detector
from inverse_detr.export import is_inverter, ship_inverter


def ship(source: str, target: Path, fp16: bool = True) -> Path:
    """Load the detector (or inverse chain) at `source` and store it at `target`; returns
    `target`."""
    if Path(target).resolve() == Path(source).resolve():
        raise ConfigError(f"ship: {target} is the source itself; give another folder")
    if is_inverter(source):
        return ship_inverter(source, Path(target), fp16=fp16)
    detector = load_detector(source)
    if isinstance(detector, ClassicDetector):
        return save_detector(detector, Path(target), fp16=fp16)
    return save_detr(detector.module, Path(target), detector.mean, detector.std, fp16)


def main(argv: list[str] | None = None) -> int:
    return run_command(_ship, argv, __doc__, with_config=False)


def _ship(args: list[str]) -> None:
    paths = [a for a in args if not a.startswith("--")]
    flags = set(args) - set(paths)
    if len(paths) != 2 or flags - {"--fp32"}:
        raise ConfigError("usage: ship SRC DST [--fp32] (see --help)")
    out = ship(paths[0], Path(paths[1]), fp16="--fp32" not in flags)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"stored {paths[0]} in {out} ({size:.1f} MB); re-measure: {_remeasure(out)}")


def _remeasure(out: Path) -> str:
    return f"analyze analysis.ckpt={out}" if is_inverter(out) else f"evaluate model={out}"
