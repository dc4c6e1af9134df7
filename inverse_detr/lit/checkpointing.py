"""Checkpoints that survive kills, preemption and strangers' files.

- `AtomicCheckpointIO` writes every Lightning checkpoint to a hidden file beside the target, syncs
  it and renames it into place: a kill mid-write leaves the previous `last.ckpt` whole. (Lightning's
  own writer stages the file in $TMPDIR and `shutil.move`s it, which is a plain copy, so not
  atomic, whenever the run folder lives on another file system: the usual case on clusters.)
- `ResumeCheckpoint` writes `last.ckpt` every N optimiser steps and when SIGTERM stops the run,
  and carries the RNG states, which Lightning's checkpoints leave out.
- `read_checkpoint` / `check_resumable` open a checkpoint with `weights_only=True` (nothing is
  unpickled but tensors and plain containers) and turn a corrupt, hostile or foreign file into a
  one-line `CheckpointError`.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn

from inverse_detr.errors import UserError

log = logging.getLogger(__name__)


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be resumed from; the message is one line."""


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path` so that `path` always holds a whole file, old or new.

    The partial file has a fixed name, so a kill leaves at most one behind per target and the
    next save overwrites it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)  # atomic within one file system
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:  # make the rename itself durable
        os.fsync(folder)
    finally:
        os.close(folder)


def remove_partial_files(folder: Path) -> int:
    """Delete what killed saves left in `folder` (`.<name>.partial`); returns how many. A
    resumed run calls it: the partial file of a best-<epoch>-<step> target is never
    overwritten, since the next best has another name."""
    partials = list(folder.glob(".*.partial")) if folder.is_dir() else []
    for partial in partials:
        partial.unlink(missing_ok=True)
    if partials:
        log.info(
            "removed %d partial checkpoint file(s) of a killed save in %s", len(partials), folder
        )
    return len(partials)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with an atomic local save (remote paths: Lightning's)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, Path(path))


def rng_states() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states, as tensors and plain types only, so
    that a `weights_only` load can read them back."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeCheckpoint(Callback):
    """`last.ckpt` every `every_n_steps` optimiser steps (0: off; ModelCheckpoint writes it at
    epoch ends), when training ends and on SIGTERM. The RNG states ride along in every
    checkpoint and are restored when training starts from one."""

    def __init__(self, path: Path, every_n_steps: int) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step = -1
        self._restored_rng: dict[str, Any] | None = None

    def save(self, trainer: pl.Trainer) -> None:
        """Every rank calls this (the strategy writes on rank zero only)."""
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        step = trainer.global_step
        due = self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0
        if due and step != self._saved_step and not trainer.fast_dev_run:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # max_steps or max_time can end training mid-epoch, after the last epoch-end save
        if trainer.global_step != self._saved_step and not trainer.fast_dev_run:
            self.save(trainer)

    def on_exception(self, trainer: pl.Trainer, _: Any, error: BaseException) -> None:
        # Lightning raises SIGTERMException between two steps, so the state is consistent
        if isinstance(error, SIGTERMException) and not trainer.fast_dev_run:
            self.save(trainer)
            if trainer.is_global_zero:
                log.warning("SIGTERM: saved %s at step %d", self.path, trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_rng = state_dict.get("rng")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the sanity check, whose loaders draw from the generators too
        if self._restored_rng is not None:
            set_rng_states(self._restored_rng)
            self._restored_rng = None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint, loaded with `weights_only=True` (memory-mapped, so cheap)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: refused to unpickle ({first})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated? ({first})") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "global_step"} <= checkpoint.keys():
        raise CheckpointError(f"{path}: not a Lightning training checkpoint")
    return checkpoint


def state_mismatch(state: dict[str, torch.Tensor], module: nn.Module) -> str:
    """Why `state` does not fit `module` ("" when it does). Keys of the frozen DETR, which
    inversion checkpoints leave out, may be missing."""
    own = module.state_dict()
    unexpected = [k for k in state if k not in own]
    if unexpected:
        return f"holds {unexpected[0]}, which the model does not have"
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            return f"{key} has shape {tuple(value.shape)}, the model's {tuple(own[key].shape)}"
    missing = [k for k in own if k not in state and not k.startswith("detr.")]
    if missing:
        return f"lacks {missing[0]}"
    return ""


def check_resumable(path: Path, module: nn.Module) -> None:
    """One-line CheckpointError unless `path` is a checkpoint of this very architecture."""
    why = state_mismatch(read_checkpoint(path)["state_dict"], module)
    if why:
        raise CheckpointError(f"{path}: trained for another architecture ({why})")
