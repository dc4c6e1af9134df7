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

import torch

from inverse_detr.detectors.interface import Detector, module_device
from inverse_detr.layout.optimize import (
    InversionResult,
    InversionSettings,
    optimize_images,
    query_objective,
)

SIDES = ("above", "below", "left", "right")
PLACEHOLDER = re.compile(r"^(?:class_\d+|LABEL_\d+|N/A)$")  # ids a detector never uses


def named_categories(detector: Detector) -> dict[int, str]:
    """The detector's categories that have a real name (not "class_3", "LABEL_3" or "N/A")."""
    return {c: n for c, n in detector.categories.items() if not PLACEHOLDER.match(n)}


@dataclass
class QueryOutputs:
    """A query-based detector's (DETR's) raw outputs on N images, on the CPU.

    logits: (N, Q, C + 1) with "no object" last;  boxes: (N, Q, 4) normalised cxcywh
    """

    logits: torch.Tensor
    boxes: torch.Tensor


@torch.no_grad()
def query_outputs(detector: Detector, images: torch.Tensor, batch_size: int = 16) -> QueryOutputs:
    """The detector's per-query logits and boxes on (N, 3, H, W) [0, 1] images, `batch_size`
    at a time on its device (raw outputs "logits", "pred_boxes": a DETR)."""
    device = module_device(detector)
    logits, boxes = [], []
    for chunk in images.split(batch_size):
        raw = detector.raw_outputs(chunk.to(device))
        logits.append(raw["logits"].float().cpu())
        boxes.append(raw["pred_boxes"].float().cpu())
    return QueryOutputs(torch.cat(logits), torch.cat(boxes))


def single_query_images(
    detector: Detector,
    query: int,
    category: int,
    seeds: int,
    image_size: tuple[int, int],
    settings: InversionSettings = InversionSettings(),
    batch_size: int = 16,
    progress: bool = True,
) -> InversionResult:
    """`seeds` (3, H, W) images, each maximising p(category) of `query` from its own noise and
    jitter. The query and category are checked against the detector's per-query logits."""
    blank = torch.zeros(1, 3, *image_size, device=module_device(detector))
    with torch.no_grad():
        _, num_queries, width = detector.raw_outputs(blank)["logits"].shape  # (1, Q, C + 1)
    if not 0 <= query < num_queries:
        raise ValueError(f"query {query} out of range: the detector has {num_queries} queries")
    if not 0 <= category < width - 1:
        raise ValueError(f"category {category} out of range: the detector has {width - 1} classes")
    objective = query_objective(detector, query, category)
    parts = []
    for start in range(0, seeds, batch_size):
        keys = list(range(start, min(seeds, start + batch_size)))
        label = f"query {query} → category {category}, seeds {keys[0]}-{keys[-1]}"
        parts.append(
            optimize_images(detector, objective, keys, image_size, settings, label, progress)
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
    outputs: QueryOutputs, query: int, category: int, threshold: float = 0.5
) -> ContextStats:
    """Count the other confident detections around the optimised query's box.

    outputs: the detector's per-query outputs on the single-query images (`query_outputs`).
    """
    probs = outputs.logits.float().softmax(-1)[..., :-1]  # (N, Q, C): drop "no object"
    scores, labels = probs.max(-1)  # (N, Q)
    stats = ContextStats(query, category, images=len(scores))
    for n in range(len(scores)):
        if labels[n, query] != category or scores[n, query] <= threshold:
            continue
        stats.found += 1
        centre = outputs.boxes[n, query, :2]  # (cx, cy) of the target object
        others = (scores[n] > threshold).nonzero().flatten().tolist()
        for q in (q for q in others if q != query):
            cid = int(labels[n, q])
            if cid == category:
                stats.same += 1
                continue
            dx, dy = (outputs.boxes[n, q, :2] - centre).tolist()
            stats.counts[cid] += 1
            sides = stats.sides.setdefault(cid, Counter())
            if dy:
                sides["above" if dy < 0 else "below"] += 1
            if dx:
                sides["left" if dx < 0 else "right"] += 1
    return stats
