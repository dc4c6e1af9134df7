"""`python -m inverse_detr average RUN [DST] [--from-step=N] [--to-step=M] [--bn-images=N]`

Stochastic weight averaging of an inversion run: the uniform mean of the inverse chain's
weights over the checkpoints the run kept (`RUN/checkpoints/step-*.ckpt`, written every
`trainer.keep_every_n_steps` steps) from step N to step M (default: the last kept step; a
window mid-run, e.g. before a restart; N defaults to the last quarter of the steps up to M),
BatchNorm statistics recomputed on the backbone embeddings of `--bn-images` training images
of the run's own data (default 2000), stored as an export in DST (default `RUN/averaged`),
full precision, beside the run's `export/`. Re-measure it with `python -m inverse_detr.analyze
analysis.ckpt=DST`; ship it with `ship DST checkpoints/NAME`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from inverse_detr.cli.shell import run_command
from inverse_detr.config import ConfigError
from inverse_detr.data.batch import collate
from inverse_detr.data.coco import CocoDetection
from inverse_detr.data.splits import data_splits
from inverse_detr.detectors.detr import forward_embeddings
from inverse_detr.export import Inverter, load_inverter, ship_inverter
from inverse_detr.inverse.average import average_states, refresh_batch_norm
from inverse_detr.inverse.backbone import token_map
from inverse_detr.lit.checkpointing import read_checkpoint

KEPT = re.compile(r"step-(\d+)\.ckpt")
CHAIN_PREFIX = "chain."


def kept_checkpoints(
    run: Path, from_step: int | None = None, to_step: int | None = None
) -> dict[int, Path]:
    """{step: path} of the run's kept checkpoints with from_step ≤ step ≤ to_step (None: the
    largest kept step; from the last quarter of the steps up to to_step); a one-line
    ConfigError when there are none."""
    folder = run / "checkpoints"
    kept = {int(m.group(1)): p for p in folder.glob("step-*.ckpt") if (m := KEPT.fullmatch(p.name))}
    if not kept:
        raise ConfigError(
            f"{folder}: no step-*.ckpt to average; train with trainer.keep_every_n_steps=N"
        )
    end = max(kept) if to_step is None else to_step
    start = round(0.75 * end) if from_step is None else from_step
    chosen = {step: kept[step] for step in sorted(kept) if start <= step <= end}
    if not chosen:
        raise ConfigError(
            f"{folder}: no kept checkpoint at steps {start}..{end} (kept: {min(kept)}..{max(kept)})"
        )
    return chosen


def chain_state(path: Path) -> dict[str, torch.Tensor]:
    """The inverse chain's weights in a Lightning checkpoint of an inversion run."""
    state = read_checkpoint(path)["state_dict"]
    chain = {k[len(CHAIN_PREFIX) :]: v for k, v in state.items() if k.startswith(CHAIN_PREFIX)}
    if not chain:
        raise ConfigError(f"{path}: holds no inverse chain (not an inversion run's checkpoint)")
    return chain


def average_run(
    run: Path, target: Path, steps: tuple[int | None, int | None], bn_images: int
) -> Path:
    """Average the run's kept checkpoints at steps (from, to) into an export at `target`."""
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run}: no config.yaml here; give a training run's folder")
    cfg = OmegaConf.load(run / "config.yaml")
    if cfg.get("mode", "inversion") != "inversion":  # a joint run's DETR moves with its chain
        raise ConfigError(f"{run}: a mode={cfg.mode} run; only inversion runs average")
    inverter = load_inverter(run)  # the run's export: architecture, DETR, preprocessing
    chosen = kept_checkpoints(run, *steps)
    print(f"averaging {len(chosen)} checkpoints, steps {min(chosen)}..{max(chosen)}", flush=True)
    try:
        inverter.chain.load_state_dict(average_states([chain_state(p) for p in chosen.values()]))
    except (RuntimeError, ValueError) as err:  # a kept checkpoint of another architecture
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"{run}: kept checkpoints do not fit its export ({first})") from None
    if inverter.chain.backbone is not None:
        train = data_splits(cfg.data)[0]
        dataset = CocoDetection(train.images, train.annotations, inverter.transform)
        maps = _backbone_maps(inverter, dataset, bn_images, cfg.data.batch_size, cfg.seed)
        refresh_batch_norm(inverter.chain.backbone, maps)
    return ship_inverter(run, target, fp16=False, state=inverter.chain.state_dict())


def _backbone_maps(
    inverter: Inverter, dataset: CocoDetection, count: int, batch_size: int, seed: int
) -> Iterator[torch.Tensor]:
    """(B, d, H', W') backbone embeddings of `count` training images in a seeded order."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    order = order[:count].tolist()
    for start in tqdm(range(0, len(order), batch_size), desc="BatchNorm statistics"):
        batch = collate([dataset[i] for i in order[start : start + batch_size]])
        if not len(batch):  # every image of it unreadable (the dataset counts them)
            continue
        pixels = batch.pixel_values.to(inverter.device)
        emb = forward_embeddings(inverter.detr, pixels, batch.pixel_mask.to(inverter.device))
        yield token_map(emb.backbone, emb.grid)


def main(argv: list[str] | None = None) -> int:
    return run_command(_average, argv, __doc__, with_config=False)


def _average(args: list[str]) -> None:
    paths = [a for a in args if not a.startswith("--")]
    options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    unknown = [a for a in args if a.startswith("--") and "=" not in a]
    unknown += [f"--{k}" for k in options if k not in ("from-step", "to-step", "bn-images")]
    if not 1 <= len(paths) <= 2 or unknown:
        raise ConfigError(
            "usage: average RUN [DST] [--from-step=N] [--to-step=M] [--bn-images=N] (see --help)"
        )
    run = Path(paths[0])
    target = Path(paths[1]) if len(paths) == 2 else run / "averaged"
    steps = _count(options, "from-step", None), _count(options, "to-step", None)
    bn_images = _count(options, "bn-images", 2000)
    if bn_images < 1:
        raise ConfigError(f"--bn-images must be ≥ 1, got {bn_images}")
    out = average_run(run, target, steps, bn_images)
    print(f"stored the averaged chain in {out}; re-measure: analyze analysis.ckpt={out}")


def _count(options: dict[str, str], key: str, default: int | None) -> int | None:
    if key not in options:
        return default
    try:
        return int(options[key])
    except ValueError:
        raise ConfigError(f"--{key} must be a whole number, got {options[key]!r}") from None
