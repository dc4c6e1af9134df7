"""The single-stage detectors' Z-step: the detector's own assignment, background for the
unassigned candidates that would survive post-processing, and nothing for the rest."""

from __future__ import annotations

import pytest
import torch

from inverse_detr.detectors.classic import ClassicDetector, ClassicSpec, build_classic
from inverse_detr.detectors.dense_zstep import assign, dense_targets, surviving

SIZE = 128  # the shapes canvas, with the shipped anchors (8–70 px objects)
CATEGORIES = {1: "circle", 2: "square", 3: "triangle"}


def dense(family: str) -> tuple[ClassicDetector, torch.Tensor, list[int]]:
    """A random detector, its anchors (A, 4) and candidates per level."""
    torch.manual_seed(0)
    spec = ClassicSpec(family, CATEGORIES, image_size=SIZE)
    detector = ClassicDetector(build_classic(spec).eval(), spec)
    raw, per_level = detector._dense(torch.zeros(1, 3, SIZE, SIZE))
    return detector, raw["anchors"][0], per_level


def random_boxes(seed: int, n: int) -> torch.Tensor:
    """(n, 4) xyxy boxes with sides in the world's range, inside the canvas."""
    g = torch.Generator().manual_seed(seed)
    wh = torch.randint(8, 71, (n, 2), generator=g).float()
    xy = torch.rand(n, 2, generator=g) * (SIZE - wh)
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("family", ["retinanet", "fcos"])
def test_every_layout_object_gets_candidates(family):
    detector, anchors, per_level = dense(family)
    assert sum(per_level) == len(anchors)
    for seed in range(5):
        boxes = random_boxes(seed, 4)
        assigned = assign(detector.module, anchors, boxes, per_level)
        assert assigned.shape == (len(anchors),)
        assert set(assigned.unique().tolist()) >= set(range(4)), (seed, boxes)
        assert assigned.min() >= -2 and assigned.max() < 4


@pytest.mark.parametrize("family", ["retinanet", "fcos"])
def test_only_unassigned_candidates_that_would_survive_get_background(family):
    detector, anchors, per_level = dense(family)
    model = detector.module
    boxes = torch.tensor([[10.0, 10.0, 40.0, 40.0]])
    assigned = assign(model, anchors, boxes, per_level)
    far = int(torch.where(assigned == -1)[0][-1])  # a candidate that matches nothing
    near = int(torch.where(assigned == 0)[0][0])
    scores = torch.zeros(len(anchors), 4)
    scores[far, 2] = 0.9  # would be detected: must be pushed to background
    scores[far, 1] = model.score_thresh / 2  # below the threshold: left alone
    scores[near, 1] = 0.9  # assigned: gets its object, never background
    z = dense_targets(model, anchors, scores, boxes, per_level)
    assert z.background[far, 2] and not z.background[far, 1]
    assert not z.background[near].any() and z.positive[near]
    assert z.background.sum() == 1


def test_surviving_keeps_each_levels_top_k():
    detector, anchors, per_level = dense("retinanet")
    model = detector.module
    model.topk_candidates = 1
    scores = torch.zeros(len(anchors), 4)
    scores[0, 1], scores[1, 2] = 0.8, 0.6  # two candidates on the first level: one survives
    scores[per_level[0], 3] = 0.3  # the second level's best
    kept = surviving(model, scores, per_level)
    assert kept[0, 1] and not kept[1, 2] and kept[per_level[0], 3]
    assert kept.sum() == 2
