"""Single-candidate visualisation, the context it brings along, and its scale.

Maximise one candidate's score for one category — a DETR query, a RetinaNet anchor, an FCOS
point, an R-CNN RoI fixed at an anchor's box — with no other constraint, from many seeds;
then feed the images back to the detector and count which other categories it reports with
score > 0.5, and where they sit relative to the target object (above/below, left/right of its
box centre): what the detector has learnt to expect around an object. Run at the central
candidate of each pyramid level, the same shows what scale each level draws.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import torch

from inverse_detr.data.shapes.rules import CONTEXT_RULES
from inverse_detr.detectors.interface import Candidates, Detector, Prediction
from inverse_detr.layout.optimize import (
    InversionResult,
    InversionSettings,
    Objective,
    optimize_images,
)

SIDES = ("above", "below", "left", "right")
PLACEHOLDER = re.compile(r"^(?:class_\d+|LABEL_\d+|N/A)$")  # ids a detector never uses


def named_categories(detector: Detector) -> dict[int, str]:
    """The detector's categories that have a real name (not "class_3", "LABEL_3" or "N/A")."""
    return {c: n for c, n in detector.categories.items() if not PLACEHOLDER.match(n)}


def candidate_objective(detector: Detector, candidate: int, category: int) -> Objective:
    """−log score of `category` at one candidate, and nothing else."""

    def objective(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        return -detector.candidate_log_score(images, candidate, category)

    return objective


def centre_candidate(candidates: Candidates, level: int, size: tuple[int, int]) -> int:
    """The candidate of pyramid `level` nearest the (H, W) canvas centre; among those there,
    the squarest, then the median size. A detector without candidate boxes (DETR): query 0."""
    if candidates.boxes is None:
        return 0
    index = torch.where(candidates.levels == level)[0]
    if not len(index):
        raise ValueError(f"no candidates on level {level}: levels {levels_of(candidates)}")
    boxes = candidates.boxes[index].float().cpu()
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    h, w = size
    distance = (centres - torch.tensor([w / 2, h / 2])).norm(dim=1)
    nearest = index[distance <= distance.min() + 1e-3]
    boxes = candidates.boxes[nearest].float().cpu()
    sides = boxes[:, 2:] - boxes[:, :2]
    squareness = (sides[:, 0] - sides[:, 1]).abs()
    square = nearest[squareness <= squareness.min() + 1e-3]
    areas = candidates.boxes[square].float().cpu()
    areas = (areas[:, 2] - areas[:, 0]) * (areas[:, 3] - areas[:, 1])
    return int(square[areas.argsort()[len(square) // 2]])


def levels_of(candidates: Candidates) -> list[int]:
    return sorted(set(candidates.levels.tolist()))


def single_candidate_images(
    detector: Detector,
    candidate: int,
    category: int,
    seeds: int,
    image_size: tuple[int, int],
    settings: InversionSettings = InversionSettings(),
    batch_size: int = 16,
    progress: bool = True,
) -> InversionResult:
    """`seeds` (3, H, W) images, each maximising `category`'s score at `candidate` from its own
    noise and jitter. Candidate and category are checked against the detector."""
    count = detector.candidates(image_size).count
    if not 0 <= candidate < count:
        raise ValueError(f"candidate {candidate} out of range: the detector has {count}")
    if category not in detector.categories:
        raise ValueError(f"category {category} is not one of the detector's")
    objective = candidate_objective(detector, candidate, category)
    parts = []
    for start in range(0, seeds, batch_size):
        keys = list(range(start, min(seeds, start + batch_size)))
        label = f"candidate {candidate} → category {category}, seeds {keys[0]}-{keys[-1]}"
        parts.append(
            optimize_images(detector, objective, keys, image_size, settings, label, progress)
        )
    return InversionResult.concat(parts)


@dataclass
class ContextStats:
    """What the detector reports beside the target object, over `images` generated images.

    found: images on which the target category is detected with score > threshold (only
    those count below; the target is its best-scoring such detection);  sizes: the target's
    box side sqrt(w·h) in pixels on each of them;  counts: other category → its detections;
    sides: other category → {above, below, left, right} → how many of them lie there (a
    centre level with the target's counts on neither side of that axis);  same: further
    detections of the target's own category (a second instance, or a duplicate).
    """

    candidate: int
    category: int
    images: int
    found: int = 0
    sizes: list[float] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    sides: dict[int, Counter] = field(default_factory=dict)
    same: int = 0

    def as_dict(self) -> dict:
        return {
            "candidate": self.candidate,
            "category": self.category,
            "images": self.images,
            "found": self.found,
            "mean_side_px": sum(self.sizes) / len(self.sizes) if self.sizes else None,
            "same_category": self.same,
            "counts": {str(c): n for c, n in sorted(self.counts.items())},
            "sides": {str(c): {s: v[s] for s in SIDES} for c, v in sorted(self.sides.items())},
        }


def context_statistics(
    predictions: list[Prediction], candidate: int, category: int, threshold: float = 0.5
) -> ContextStats:
    """Count the other confident detections around the target object, one `Prediction` per
    single-candidate image (the detector's post-processed detections on it)."""
    stats = ContextStats(candidate, category, images=len(predictions))
    for found in predictions:
        confident = found.scores > threshold
        mine = torch.where(confident & (found.labels == category))[0]
        if not len(mine):
            continue
        stats.found += 1
        target = mine[found.scores[mine].argmax()]
        box = found.boxes[target]
        stats.sizes.append(float(((box[2] - box[0]) * (box[3] - box[1])).clamp(min=0).sqrt()))
        centre = (box[:2] + box[2:]) / 2
        for other in torch.where(confident)[0].tolist():
            if other == target:
                continue
            cid = int(found.labels[other])
            if cid == category:
                stats.same += 1
                continue
            dx, dy = ((found.boxes[other, :2] + found.boxes[other, 2:]) / 2 - centre).tolist()
            stats.counts[cid] += 1
            sides = stats.sides.setdefault(cid, Counter())
            if dy:
                sides["above" if dy < 0 else "below"] += 1
            if dx:
                sides["left" if dx < 0 else "right"] += 1
    return stats


def planted_rules(stats: dict[str, ContextStats], names: dict[int, str]) -> list[dict]:
    """The shapes world's planted co-occurrences beside what the images recover: for each rule
    whose anchor was a target, the partner's detections per found image and on which side."""
    ids = {name: cid for cid, name in names.items()}
    rows = []
    for rule in CONTEXT_RULES:
        s = stats.get(rule.anchor)
        if s is None or rule.partner not in ids:
            continue
        partner = ids[rule.partner]
        sides = s.sides.get(partner, {})
        rows.append(
            {
                "planted": f"{rule.anchor} → {rule.partner} {rule.where} (p {rule.p})",
                "found_images": s.found,
                "partner_per_image": s.counts[partner] / max(1, s.found),
                "partner_sides": {side: sides.get(side, 0) for side in SIDES},
            }
        )
    return rows
