"""`python -m inverse_detr ship SRC DST [--fp32]` (or `inverse-detr ship ...`)

Stores a trained DETR directory (e.g. a run's `detr/`) as a checkpoint to ship in
`checkpoints/`: fp16 safetensors (half the size; `config.json` keeps float32, so it loads back
as float32), the image statistics, no BatchNorm counters. `--fp32` keeps full precision.
Re-measure the stored weights afterwards: `python -m inverse_detr.evaluate model=DST`.
"""

from __future__ import annotations

from pathlib import Path

from inverse_detr.cli.shell import run_command
from inverse_detr.config import ConfigError
from inverse_detr.detectors.detr import image_normalization, load_detr, save_detr


def ship(source: str, target: Path, fp16: bool = True) -> Path:
    """Load the DETR at `source` and store it at `target`; returns `target`."""
    if Path(target).resolve() == Path(source).resolve():
        raise ConfigError(f"ship: {target} is the source itself; give another folder")
    mean, std = image_normalization(source)
    detr = load_detr(source)
    return save_detr(detr, Path(target), mean, std, fp16_storage=fp16)


def main(argv: list[str] | None = None) -> int:
    return run_command(_ship, argv, __doc__, with_config=False)


def _ship(args: list[str]) -> None:
    paths = [a for a in args if not a.startswith("--")]
    flags = set(args) - set(paths)
    if len(paths) != 2 or flags - {"--fp32"}:
        raise ConfigError("usage: ship SRC DST [--fp32] (see --help)")
    out = ship(paths[0], Path(paths[1]), fp16="--fp32" not in flags)
    size = (out / "model.safetensors").stat().st_size / 1e6
    print(f"stored {paths[0]} in {out} ({size:.1f} MB); re-measure: evaluate model={out}")
