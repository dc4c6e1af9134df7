"""What a transfer-matrix run inverts: one row per detector, and a boxes-only row beside the
full one for a detector with a mask head (as the layout-inversion paper's Table 1 has
Mask R-CNN boxes only / boxes + masks), each with its family's settings and its loss terms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from inverse_detr.detectors.interface import Detector, module_device
from inverse_detr.layout.optimize import InversionSettings, select_terms

BOXES_ROW = "{}.boxes"  # the boxes-only row of a detector whose losses include "mask"


@dataclass(frozen=True)
class Row:
    """One set of inverted images: its name, the detector that inverts, the settings (their
    `terms` the loss terms used) and whether those include the detector's mask term."""

    name: str
    detector: str
    settings: InversionSettings
    masks: bool = False


def probe_terms(detector: Detector, size: tuple[int, int]) -> set[str]:
    """The loss terms the detector's `inversion_losses` gives for a one-object layout with a
    mask on a blank (H, W) canvas (no gradients)."""
    device = module_device(detector)
    h, w = size
    masks = torch.zeros(1, h, w, dtype=torch.uint8, device=device)
    masks[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    box = torch.tensor([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], device=device)
    label = torch.tensor([min(detector.categories)], device=device)
    blank = torch.zeros(1, 3, h, w, device=device)
    with torch.no_grad():
        losses = detector.inversion_losses(blank, [{"boxes": box, "labels": label, "masks": masks}])
    return set(losses)


def check_terms(terms: str, available: set[str]) -> None:
    """A ValueError naming the available terms when `terms` selects one the detector lacks."""
    select_terms({name: torch.zeros(1) for name in available}, terms)


def matrix_rows(
    name: str, detector: str, available: set[str], settings: InversionSettings
) -> list[Row]:
    """The rows one detector inverts: with `settings.terms`, preceded, when those use the
    detector's "mask" term besides others, by a boxes-only row without it."""
    chosen = sorted(available) if settings.terms == "all" else settings.terms.split("+")
    rows = [Row(name, detector, settings, masks="mask" in chosen)]
    boxes = [term for term in chosen if term != "mask"]
    if "mask" in chosen and boxes:
        rows.insert(
            0, Row(BOXES_ROW.format(name), detector, replace(settings, terms="+".join(boxes)))
        )
    return rows
