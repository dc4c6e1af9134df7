"""The device the inference commands (evaluate, analyze, invert_layout) run on."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from inverse_detr.config import ConfigError, given_keys

INFERENCE_ACCELERATORS = ("cpu", "gpu", "cuda", "auto")


def inference_device(cfg: DictConfig, overrides: list[str]) -> torch.device:
    """The device of evaluate, analyze and invert_layout. An accelerator named on the command
    line `overrides` (`trainer=NAME` or `trainer.accelerator=cpu|gpu|cuda|auto`) is obeyed;
    otherwise auto, since `trainer.accelerator` alone is the training default (cpu): CUDA when
    `torch.cuda.is_available()`, else the CPU."""
    named = {"trainer", "trainer.accelerator"} & set(given_keys(overrides))
    accelerator = cfg.trainer.accelerator if named else "auto"
    if accelerator not in INFERENCE_ACCELERATORS:
        raise ConfigError(
            f"config key 'trainer.accelerator' is {accelerator!r}; evaluate, analyze and "
            f"invert_layout take: {', '.join(INFERENCE_ACCELERATORS)}"
        )
    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"config key 'trainer.accelerator' is {accelerator!r} but no CUDA device is "
            "available; drop it (auto) or give trainer.accelerator=cpu"
        )
    return torch.device("cuda")
