"""Single-query visualisation and the context it brings along.

Maximise one query's probability of one category, with no other constraint, from many
seeds; then feed the images back to the detector and count which other categories it
reports with score > 0.5, and where they sit relative to the target object (above/below,
left/right of its box centre): what the detector has learnt to expect around an object.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from transformers import DetrForObjectDetection

from inverse_detr.layout.optimize import (
    InversionResult,
    InversionSettings,
    optimize_images,
    query_objective,
)
from inverse_detr.layout.regularizers import PixelRange
from inverse_detr.layout.transfer import Detections

SIDES = ("above", "below", "left", "right")
PLACEHOLDER = re.compile(r"^(?:class_\d+|LABEL_\d+|N/A)$")  # ids a detector never uses


def named_categories(detr: DetrForObjectDetection) -> dict[int, str]:
    """The detector's categories that have a real name (COCO DETRs call unused ids "N/A")."""
    return {int(i): n for i, n in detr.config.id2label.items() if not PLACEHOLDER.match(n)}


def single_query_images(
    detr: DetrForObjectDetection,
    query: int,
    category: int,
    seeds: int,
    pixels: PixelRange,
    image_size: tuple[int, int],
    settings: InversionSettings = InversionSettings(),
    batch_size: int = 16,
    progress: bool = True,
) -> InversionResult:
    """`seeds` images, each maximising p(category) of `query` from its own noise and jitter."""
    num_queries, width = detr.config.num_queries, detr.config.num_labels + 1
    if not 0 <= query < num_queries:
        raise ValueError(f"query {query} out of range: the detector has {num_queries} queries")
    if not 0 <= category < width - 1:
        raise ValueError(f"category {category} out of range: the detector has {width - 1} classes")
    objective = query_objective(query, category)
    parts = []
    for start in range(0, seeds, batch_size):
        keys = list(range(start, min(seeds, start + batch_size)))
        label = f"query {query} → category {category}, seeds {keys[0]}-{keys[-1]}"
        parts.append(
            optimize_images(detr, objective, keys, pixels, image_size, settings, label, progress)
        )
    return InversionResult.concat(parts)


@dataclass
class ContextStats:
    """What the detector reports beside the target object, over `images` generated images.

    found: images on which the optimised query reads as the category with score > threshold
    (only those count below);  counts: other category → its detections by other queries;
    sides: other category → {above, below, left, right} → how many of them lie there (a
    centre level with the target's counts on neither side of that axis);  same: detections
    of the target's own category by other queries (a second instance, or a duplicate).
    """

    query: int
    category: int
    images: int
    found: int = 0
    counts: Counter = field(default_factory=Counter)
    sides: dict[int, Counter] = field(default_factory=dict)
    same: int = 0

    def as_dict(self) -> dict:
        return {
            "query": self.query,
            "category": self.category,
            "images": self.images,
            "found": self.found,
            "same_category": self.same,
            "counts": {str(c): n for c, n in sorted(self.counts.items())},
            "sides": {str(c): {s: v[s] for s in SIDES} for c, v in sorted(self.sides.items())},
        }


def context_statistics(
    detections: Detections, query: int, category: int, threshold: float = 0.5
) -> ContextStats:
    """Count the other confident detections around the optimised query's box.

    detections: the detector's outputs on the single-query images.
    """
    probs = detections.logits.float().softmax(-1)[..., :-1]  # (N, Q, C): drop "no object"
    scores, labels = probs.max(-1)  # (N, Q)
    stats = ContextStats(query, category, images=len(scores))
    for n in range(len(scores)):
        if labels[n, query] != category or scores[n, query] <= threshold:
            continue
        stats.found += 1
        centre = detections.boxes[n, query, :2]  # (cx, cy) of the target object
        others = (scores[n] > threshold).nonzero().flatten().tolist()
        for q in (q for q in others if q != query):
            cid = int(labels[n, q])
            if cid == category:
                stats.same += 1
                continue
            dx, dy = (detections.boxes[n, q, :2] - centre).tolist()
            stats.counts[cid] += 1
            sides = stats.sides.setdefault(cid, Counter())
            if dy:
                sides["above" if dy < 0 else "below"] += 1
            if dx:
                sides["left" if dx < 0 else "right"] += 1
    return stats
