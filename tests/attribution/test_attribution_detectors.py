"""Attribution through the real `Detector` interface: every family's differentiable box and
log-odds, tracing a detection to its candidate, and both methods' maps on tiny detectors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inverse_detr.attribution.explain import explain
from inverse_detr.attribution.maps import AttributionSettings, box_region
from inverse_detr.attribution.select import Detection, find_candidate
from inverse_detr.attribution.targets import feature_layer
from inverse_detr.config import ConfigError
from inverse_detr.detectors.classic import FAMILIES, ClassicDetector, ClassicSpec, build_classic
from inverse_detr.detectors.detr import load_detr
from inverse_detr.detectors.detr_detector import DetrDetector
from inverse_detr.detectors.interface import Detector

SIZE = 64
CATEGORIES = {1: "circle", 2: "square", 3: "triangle"}
KINDS = ("detr", *FAMILIES)


def tiny(kind: str, detr_dir) -> Detector:
    """A tiny random detector of `kind`, frozen, keeping every candidate in `predict`."""
    torch.manual_seed(0)
    if kind == "detr":
        detr = load_detr(detr_dir).requires_grad_(False)
        return DetrDetector(detr, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), CATEGORIES)
    spec = ClassicSpec(kind, CATEGORIES, image_size=SIZE)
    model = build_classic(spec).eval().requires_grad_(False)
    heads = model.roi_heads if hasattr(model, "roi_heads") else model
    heads.score_thresh = 0.0
    return ClassicDetector(model, spec)


def images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(params=KINDS)
def detector(request, tiny_detr_dir) -> Detector:
    return tiny(request.param, tiny_detr_dir)


def test_candidate_box_is_differentiable_pixels(detector):
    pixels = images().requires_grad_(True)
    candidate = detector.candidates((SIZE, SIZE)).count // 2
    box = detector.candidate_box(pixels, candidate, 2)
    assert box.shape == (2, 4) and box.isfinite().all()
    box.sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    if detector.name in ("faster_rcnn", "mask_rcnn"):  # the best class's box when none given
        best = detector.candidate_box(images(), candidate)
        assert best.shape == (2, 4)


def test_log_odds_is_the_scores_log_odds(detector):
    candidate = detector.candidates((SIZE, SIZE)).count // 3
    pixels = images().requires_grad_(True)
    odds = detector.candidate_log_odds(pixels, candidate, 1)
    log_score = detector.candidate_log_score(pixels, candidate, 1)
    assert odds.shape == (2,) and odds.isfinite().all()
    if detector.name == "fcos":  # the mean of the two logits whose sigmoids make the score
        raw = detector.raw_outputs(pixels)
        logits = raw["cls_logits"][:, candidate, 1], raw["bbox_ctrness"][:, candidate, 0]
        assert torch.allclose(odds, (logits[0] + logits[1]) / 2)
        assert torch.allclose(log_score, (F.logsigmoid(logits[0]) + F.logsigmoid(logits[1])) / 2)
    else:
        expected = log_score - torch.log(-torch.expm1(log_score))
        assert torch.allclose(odds, expected, atol=1e-3)
    odds.sum().backward()
    assert pixels.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["detr", "retinanet", "fcos"])
def test_find_candidate_traces_a_detection_to_the_candidate_that_gave_it(kind, tiny_detr_dir):
    detector = tiny(kind, tiny_detr_dir)
    image = images(1)[0]
    (found,) = detector.predict(image[None])
    inside = ((found.boxes >= 1) & (found.boxes <= SIZE - 1)).all(1)  # post-processing clips
    area = (found.boxes[:, 2:] - found.boxes[:, :2]).prod(1) * inside
    d = int(area.argmax())  # the largest unclipped box: random detectors make slivers too
    box, category = found.boxes[d], int(found.labels[d])
    candidate = find_candidate(detector, image, box, category)
    with torch.no_grad():
        again = detector.candidate_box(image[None], candidate, category)[0]
        score = detector.candidate_log_score(image[None], candidate, category).exp()
    assert torch.allclose(again, box, atol=1e-3)
    assert torch.allclose(score, found.scores[d], atol=1e-3)


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_both_methods_on_every_detector(method, detector):
    image = images(1)[0]
    box = torch.tensor([10.0, 20.0, 40.0, 44.0])
    candidate = detector.candidates((SIZE, SIZE)).count // 2
    settings = AttributionSettings(window=16, stride=16)
    maps = explain(detector, image, Detection(candidate, 1, 0.5, box), method, settings)
    assert maps.cls.shape == (SIZE, SIZE) and maps.coords.shape == (4, SIZE, SIZE)
    for values in (maps.cls, maps.coords, maps.box):
        assert values.isfinite().all() and values.min() >= 0 and values.max() <= 1
    outside = ~box_region(box, (SIZE, SIZE))
    assert not maps.cls[outside].any() and not maps.coords[:, outside].any()
    assert maps.coords.any()  # a random detector's box still moves with its input


def test_an_unknown_layer_is_one_config_error_naming_the_key(tiny_detr_dir):
    detector = tiny("retinanet", tiny_detr_dir)
    assert feature_layer(detector) is detector.module.backbone.body.layer3  # the last stage
    with pytest.raises(ConfigError, match=r"^config key 'attribution.layer' is 'nope': no such"):
        feature_layer(detector, "nope")


@pytest.mark.parametrize("kind", ["faster_rcnn", "mask_rcnn"])
def test_find_candidate_gives_an_r_cnn_anchor_inside_the_detection(kind, tiny_detr_dir):
    detector = tiny(kind, tiny_detr_dir)
    image = images(1)[0]
    box = torch.tensor([12.0, 10.0, 40.0, 30.0])
    candidate = find_candidate(detector, image, box, 1)
    anchor = detector.candidates((SIZE, SIZE)).boxes[candidate]
    centre = (anchor[:2] + anchor[2:]) / 2
    assert (centre >= box[:2]).all() and (centre <= box[2:]).all()
