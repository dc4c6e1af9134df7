"""Which detections to explain: confident detections of val images matched to an annotated
object, each traced back to the candidate that gives it.

Tracing back (`find_candidate`), per family:
- DETR: the query maximising p(category) · IoU(query's box, detection box) (one forward);
- RetinaNet, FCOS: likewise over every anchor (point), with the score post-processing ranks
  and the decoded box (one forward): the candidate post-processing kept;
- the R-CNNs detect from RPN proposals, not anchors: a shortlist of `per_level` anchors per
  pyramid level, those whose centre lies in the detection box first, then by anchor IoU with
  the box and nearness of the centres (`shortlist`); of these, the one maximising
  p(category) · IoU(its decoded box, detection box): the anchor whose box as a fixed RoI
  reproduces the detection best.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from pycocotools.coco import COCO
from torchvision.ops import box_convert, box_iou

from inverse_detr.data.annotated import AnnotatedImage, read_annotated
from inverse_detr.detectors.dense_zstep import candidate_scores, decode
from inverse_detr.detectors.interface import Candidates, Detector, Prediction, module_device

MATCH_IOU = 0.5


@dataclass
class Detection:
    """One detection to explain. candidate: the detector's candidate index; category: its id;
    score: post-processing's; box: (4,) xyxy pixels as post-processing reported it."""

    candidate: int
    category: int
    score: float
    box: torch.Tensor


def match_objects(
    found: Prediction, sample: AnnotatedImage, min_score: float
) -> list[tuple[int, int]]:
    """(detection index, object index) pairs: detections scoring ≥ `min_score`, best first,
    each matched to the unmatched same-category object it overlaps most (IoU ≥ 0.5)."""
    ious = box_iou(found.boxes.float(), sample.boxes) if len(sample.boxes) else None
    taken, pairs = set(), []
    for d in torch.argsort(found.scores, descending=True).tolist():
        if found.scores[d] < min_score or ious is None:
            continue
        fits = (sample.labels == found.labels[d]) & (ious[d] >= MATCH_IOU)
        fits[list(taken)] = False
        if fits.any():
            o = int(torch.where(fits, ious[d], torch.zeros_like(ious[d])).argmax())
            taken.add(o)
            pairs.append((d, o))
    return pairs


def shortlist(candidates: Candidates, box: torch.Tensor, per_level: int = 6) -> list[int]:
    """`per_level` candidates per level: those whose anchor centre lies in `box` (4,) xyxy
    first, then by anchor IoU with the box, then by nearness of the centres (points tie on
    IoU)."""
    anchors = candidates.boxes.float()
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    box = box.float().to(anchors.device)
    inside = ((centres >= box[:2]) & (centres <= box[2:])).all(1)
    distance = (centres - (box[:2] + box[2:]) / 2).norm(dim=1) / (box[2:] - box[:2]).norm()
    key = 2.0 * inside + box_iou(anchors, box[None])[:, 0] - 1e-3 * distance
    levels = candidates.levels.to(anchors.device)
    chosen = []
    for level in levels.unique().tolist():
        index = torch.where(levels == level)[0]
        chosen += index[key[index].argsort(descending=True)[:per_level]].tolist()
    return chosen


@torch.no_grad()
def find_candidate(
    detector: Detector, image: torch.Tensor, box: torch.Tensor, category: int, per_level: int = 6
) -> int:
    """The candidate behind a detection (`category`, `box` (4,) xyxy pixels) on `image`
    (3, H, W) in [0, 1] (module docstring)."""
    images = image[None].to(module_device(detector))
    box = box.float().to(images.device)[None]
    raw = detector.raw_outputs(images)
    if "pred_boxes" in raw:  # DETR: every query at once
        h, w = image.shape[-2:]
        scale = torch.tensor([w, h, w, h], device=images.device)
        boxes = box_convert(raw["pred_boxes"][0].float() * scale, "cxcywh", "xyxy")
        scores = raw["logits"][0].float().softmax(-1)[:, category]
    elif "cls_logits" in raw:  # RetinaNet, FCOS: every anchor (point) at once
        boxes = decode(detector.module, raw["bbox_regression"][0].float(), raw["anchors"][0])
        scores = candidate_scores(raw)[0, :, category]
    else:
        return _best_anchor(detector, images, box, category, per_level)
    return int((scores * box_iou(boxes, box)[:, 0]).argmax())


def _best_anchor(detector, images, box, category: int, per_level: int) -> int:
    """R-CNNs: of the shortlisted anchors, the one whose RoI reproduces the detection best."""
    fits = {}
    for c in shortlist(detector.candidates(tuple(images.shape[-2:])), box[0], per_level):
        score = detector.candidate_log_score(images, c, category).exp()
        fits[c] = float(score * box_iou(detector.candidate_box(images, c, category), box)[:, 0])
    return max(fits, key=fits.get)


def explainable_detections(
    detector: Detector, coco: COCO, folder: Path, n: int, min_score: float
) -> Iterator[tuple[AnnotatedImage, Detection, int]]:
    """(sample, detection, object index): up to `n` confident detections matched to an object,
    image by image in id order (`match_objects`), each traced to its candidate."""
    given = 0
    for image_id in sorted(coco.imgs):
        sample = read_annotated(coco, folder, image_id)
        (found,) = detector.predict(sample.image[None].to(module_device(detector)))
        found = Prediction(found.boxes.cpu(), found.scores.cpu(), found.labels.cpu())
        for d, o in match_objects(found, sample, min_score):
            category, box = int(found.labels[d]), found.boxes[d]
            candidate = find_candidate(detector, sample.image, box, category)
            yield sample, Detection(candidate, category, float(found.scores[d]), box), o
            given += 1
            if given >= n:
                return
