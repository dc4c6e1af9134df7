"""Single-candidate visualisation on every family: the objective, the centre candidates of the
pyramid levels, and the context statistics."""

from dataclasses import replace

import pytest
import torch

from inverse_detr.detectors.classic import FAMILIES
from inverse_detr.detectors.detr import image_normalization, load_detr
from inverse_detr.detectors.detr_detector import DetrDetector
from inverse_detr.detectors.interface import Candidates, Prediction
from inverse_detr.layout.context import (
    candidate_objective,
    centre_candidate,
    context_statistics,
    planted_rules,
    single_candidate_images,
)
from inverse_detr.layout.optimize import InversionSettings, optimize_images

SIZE = (64, 64)


@pytest.fixture(scope="module")
def detr(tiny_detr_dir):
    return DetrDetector(load_detr(tiny_detr_dir), *image_normalization(tiny_detr_dir))


def raised(detector, candidate, category) -> tuple[torch.Tensor, torch.Tensor]:
    """(before, after) −log score of two seeds' images: their starting noise and result."""
    blur = replace(InversionSettings().blur, every=0)  # no regulariser: only the detector moves it
    settings = InversionSettings(
        12, 20.0, jitter=0, tv_weight=0, p_norm_weight=0, blur=blur, seed=4
    )
    objective = candidate_objective(detector, candidate, category)
    start = optimize_images(
        detector, objective, [0, 1], SIZE, replace(settings, iterations=0), progress=False
    )
    result = single_candidate_images(
        detector, candidate, category, 2, SIZE, settings, progress=False
    )
    with torch.no_grad():
        return objective(start.images, None), objective(result.images, None)


def test_a_detr_query_raises_its_category(detr):
    before, after = raised(detr, 2, 17)
    assert (after < before).all(), (before, after)
    with pytest.raises(ValueError, match="candidate 9 out of range"):
        single_candidate_images(detr, 9, 17, 1, SIZE, progress=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_classic_candidate_raises_its_category(family, tiny_classic):
    """An anchor (RetinaNet), a point (FCOS), an anchor's box as the RoI (the R-CNNs)."""
    detector = tiny_classic(family)
    candidates = detector.candidates(SIZE)
    assert candidates.boxes.shape == (candidates.count, 4)
    assert candidates.levels.shape == (candidates.count,) and candidates.levels.max() == 2
    candidate = centre_candidate(candidates, 1, SIZE)
    before, after = raised(detector, candidate, 2)
    assert (after < before).all(), (before, after)
    with pytest.raises(ValueError, match="category 9 is not one of the detector's"):
        single_candidate_images(detector, candidate, 9, 1, SIZE, progress=False)


def test_centre_candidate_is_the_central_square_median_anchor_of_its_level():
    boxes = torch.tensor(
        [
            [0, 0, 10, 10],  # level 0, off centre
            [27, 27, 37, 37],  # level 0, centred square (10 px)
            [22, 27, 42, 37],  # level 0, centred, wide
            [24, 24, 40, 40],  # level 1, centred square (16 px)
            [20, 20, 44, 44],  # level 1, centred square (24 px): the median of three
            [16, 16, 48, 48],  # level 1, centred square (32 px)
        ],
        dtype=torch.float,
    )
    candidates = Candidates(6, boxes, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert centre_candidate(candidates, 0, (64, 64)) == 1
    assert centre_candidate(candidates, 1, (64, 64)) == 4
    with pytest.raises(ValueError, match="no candidates on level 5: levels \\[0, 1\\]"):
        centre_candidate(candidates, 5, (64, 64))
    assert centre_candidate(Candidates(3, None, torch.zeros(3, dtype=torch.long)), 0, SIZE) == 0


def prediction(rows: list[tuple[int, float, tuple[float, float]]]) -> Prediction:
    """(label, score, (cx, cy)) rows → 10 px boxes."""
    labels = torch.tensor([r[0] for r in rows])
    scores = torch.tensor([r[1] for r in rows])
    centres = torch.tensor([r[2] for r in rows], dtype=torch.float)
    boxes = torch.cat([centres - 5, centres + 5], dim=1)
    return Prediction(boxes, scores, labels)


def test_context_statistics_count_confident_neighbours_by_side():
    found = prediction(
        [
            (1, 0.9, (50, 50)),  # the target: category 1, best score
            (1, 0.7, (50, 20)),  # a second category-1 detection
            (4, 0.8, (20, 80)),  # left, below
            (2, 0.6, (90, 10)),  # right, above
            (2, 0.3, (10, 10)),  # not confident: not counted
        ]
    )
    missing = prediction([(4, 0.9, (50, 50)), (1, 0.4, (10, 10))])  # target not found
    stats = context_statistics([found, missing], candidate=3, category=1)
    assert (stats.images, stats.found, stats.same) == (2, 1, 1)
    assert stats.counts == {4: 1, 2: 1} and stats.sizes == [10.0]
    assert stats.sides[4] == {"left": 1, "below": 1} and stats.sides[2] == {"right": 1, "above": 1}
    assert stats.as_dict()["sides"]["4"] == {"above": 0, "below": 1, "left": 1, "right": 0}


def test_planted_rules_sit_beside_what_the_images_recover():
    names = {1: "circle", 3: "triangle", 2: "square"}
    triangle = prediction([(3, 0.9, (50, 30)), (1, 0.8, (50, 70)), (1, 0.8, (52, 10))])
    stats = {"triangle": context_statistics([triangle, triangle], 0, 3)}
    (rule,) = planted_rules(stats, names)  # star is not a target: its rule is left out
    assert rule["planted"] == "triangle → circle below (p 0.8)"
    assert rule["found_images"] == 2 and rule["partner_per_image"] == 2.0
    assert rule["partner_sides"] == {"above": 2, "below": 2, "left": 0, "right": 2}
