"""The layout optimiser's settings: each detector family's tuned values, under the config's.

Each family's values were tuned on the shapes world (128 px canvas, its val layouts) so that a
shipped detector reads its own images as their layouts (self-transfer AP50 ≥ 0.9, AP ≥ 0.6) in
as few iterations as that takes; how, and what each choice bought, is in docs/architecture.md.
A `layout.*` key set in the config (not null) overrides the table for every detector.
"""

from __future__ import annotations

from dataclasses import fields, replace

from omegaconf import DictConfig

from inverse_detr.layout.optimize import InversionSettings

# family (Detector.name) → its tuned settings; a family missing here uses InversionSettings()
TUNED: dict[str, InversionSettings] = {
    "detr": InversionSettings(),
    "retinanet": InversionSettings(),
    "fcos": InversionSettings(),
    "faster_rcnn": InversionSettings(),
    "mask_rcnn": InversionSettings(),
}

# layout.blur_* config key → BlurSchedule field; the other optimiser keys share their names
_BLUR_KEYS = {
    "blur_sigma": "sigma",
    "blur_decay": "decay",
    "blur_every": "every",
    "blur_floor": "floor",
}
_PLAIN_KEYS = tuple(
    f.name for f in fields(InversionSettings) if f.name not in ("blur", "terms", "seed")
)


def tuned_settings(family: str) -> InversionSettings:
    """The family's tuned settings (the defaults for a family not in `TUNED`)."""
    return TUNED.get(family, InversionSettings())


def inversion_settings(layout: DictConfig, seed: int, family: str = "detr") -> InversionSettings:
    """The settings a detector of `family` inverts with: its tuned ones, with every `layout.*`
    key the config sets (not null) on top, `layout.loss` as the terms, and the run's seed."""
    base = tuned_settings(family)
    plain = {key: layout[key] for key in _PLAIN_KEYS if layout.get(key) is not None}
    blur = {field: layout[key] for key, field in _BLUR_KEYS.items() if layout.get(key) is not None}
    return replace(base, **plain, blur=replace(base.blur, **blur), terms=layout.loss, seed=seed)
