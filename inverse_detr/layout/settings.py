"""The layout optimiser's settings from the config's `layout` section."""

from __future__ import annotations

from omegaconf import DictConfig

from inverse_detr.layout.optimize import InversionSettings
from inverse_detr.layout.regularizers import BlurSchedule


def inversion_settings(layout: DictConfig, seed: int) -> InversionSettings:
    """The layout optimiser's settings from the config's `layout` section."""
    blur = BlurSchedule(layout.blur_sigma, layout.blur_decay, layout.blur_every, layout.blur_floor)
    return InversionSettings(
        iterations=layout.iterations,
        lr=layout.lr,
        momentum=layout.momentum,
        lr_step=layout.lr_step,
        lr_gamma=layout.lr_gamma,
        blur=blur,
        jitter=layout.jitter,
        tv_weight=layout.tv_weight,
        p_norm_weight=layout.p_norm_weight,
        p=layout.p,
        init_std=layout.init_std,
        terms=layout.loss,
        seed=seed,
    )
