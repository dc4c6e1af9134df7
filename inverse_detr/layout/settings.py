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
from inverse_detr.layout.regularizers import BlurSchedule

# Tuned on the shapes world, 16 val layouts, self-transfer (commands in docs/architecture.md).
# DETR keeps the long schedule it was first tuned with. The classic detectors reach the goal in
# far fewer iterations once the blur decays faster (× 0.96 per blur, not × 0.985: the slow decay
# still blurred at sigma 2 after 300 iterations: RetinaNet AP50 0.67 instead of 0.99); the R-CNNs
# also start the blur at sigma 1, as a sigma-5 blur undid their first steps (their loss rose for
# the first ~30 iterations).
_DENSE = InversionSettings(iterations=300, lr_step=200, blur=BlurSchedule(decay=0.96))
_RCNN = InversionSettings(iterations=200, lr_step=130, blur=BlurSchedule(sigma=1.0, decay=0.96))

# family (Detector.name) → its tuned settings; a family missing here uses InversionSettings()
TUNED: dict[str, InversionSettings] = {
    "detr": InversionSettings(),
    "retinanet": _DENSE,
    "fcos": _DENSE,
    "faster_rcnn": _RCNN,
    "mask_rcnn": _RCNN,
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
