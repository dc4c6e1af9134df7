"""Evaluating any detector behind the `Detector` interface: COCO box AP (overall, per category,
per size bucket of the data's own definition) and, for detectors with masks, mask AP."""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.detection import MeanAveragePrecision

from inverse_detr.analysis.metrics import APScores, ap_metric, detection_targets
from inverse_detr.detectors.interface import Detector, Prediction, module_device

# COCO's small / medium / large in pixels² of the image the detector sees, for data that
# defines no buckets of its own (the shapes world records its own in `info.area_buckets`)
COCO_BUCKETS = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}


@dataclass
class Evaluation:
    """Box AP (with per-category AP), AP per size bucket, and mask AP (None without masks)."""

    box: APScores
    by_size: dict[str, float] = field(default_factory=dict)
    mask_ap: float | None = None
    mask_ap50: float | None = None

    def summary(self) -> dict[str, float]:
        """The flat numbers of the command's JSON line."""
        out = {"ap": self.box.ap, "ap50": self.box.ap50, "ap75": self.box.ap75}
        out |= {f"ap_{name}": value for name, value in self.by_size.items()}
        if self.mask_ap is not None:
            out |= {"mask_ap": self.mask_ap, "mask_ap50": self.mask_ap50}
        # a bucket without ground truth has no AP: null in JSON, not NaN
        return {k: None if v is None or math.isnan(v) else v for k, v in out.items()}


class SizeBuckets:
    """Collects ground truth and detections, then COCO box AP per area bucket (pycocotools
    with the bucket ranges in place of COCO's fixed ones). Areas: instance-mask pixels on the
    canvas, as COCO's `area`."""

    def __init__(self, buckets: dict[str, tuple[float, float]]) -> None:
        self.buckets = buckets
        self.images, self.truth, self.found = [], [], []

    def update(self, predictions: list[Prediction], targets: list, truth: list[dict]) -> None:
        """truth: `detection_targets(targets)`, which the caller has already built."""
        for p, t, boxes in zip(predictions, targets, truth, strict=True):
            image_id = len(self.images) + 1
            h, w = t.masks.shape[-2:] if t.masks.numel() else t.size
            self.images.append({"id": image_id, "height": int(h), "width": int(w)})
            for k, (box, label) in enumerate(zip(boxes["boxes"], boxes["labels"], strict=True)):
                crowd = bool(boxes["iscrowd"][k])
                area = float(t.masks[k].sum()) if k < len(t.masks) else _box_area(box)
                self.truth.append(_record(image_id, label, box, area=area, iscrowd=int(crowd)))
            for box, score, label in zip(p.boxes, p.scores, p.labels, strict=True):
                self.found.append(_record(image_id, label, box, score=float(score)))

    def compute(self) -> dict[str, float]:
        if not self.truth:
            return {}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            return self._compute()

    def _compute(self) -> dict[str, float]:
        ids = sorted(
            {a["category_id"] for a in self.truth} | {a["category_id"] for a in self.found}
        )
        gt = COCO()
        gt.dataset = {
            "images": self.images,
            "annotations": [{**a, "id": i + 1} for i, a in enumerate(self.truth)],
            "categories": [{"id": c} for c in ids],
        }
        gt.createIndex()
        dt = gt.loadRes(self.found) if self.found else COCO()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.areaRng = [[0.0, 1e10], *[list(r) for r in self.buckets.values()]]
        evaluator.params.areaRngLbl = ["all", *self.buckets]
        evaluator.evaluate()
        evaluator.accumulate()
        precision = evaluator.eval["precision"]  # (IoU, recall, category, area, max dets)
        out = {}
        for index, name in enumerate(self.buckets, start=1):
            values = precision[:, :, :, index, -1]
            out[name] = float(values[values > -1].mean()) if (values > -1).any() else float("nan")
        return out


def _box_area(box: torch.Tensor) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))


def _record(image_id: int, label, box: torch.Tensor, **extra) -> dict:
    x0, y0, x1, y1 = (float(v) for v in box)
    return {
        "image_id": image_id,
        "category_id": int(label),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        **extra,
    }


@torch.no_grad()
def evaluate_any(
    detector: Detector,
    batches,
    mean: torch.Tensor,
    std: torch.Tensor,
    buckets: dict[str, tuple[float, float]] = COCO_BUCKETS,
    progress: bool = True,
) -> Evaluation:
    """Evaluate `detector` on an iterable of `Batch`es (their pixel values normalised with
    `mean`, `std`: (1, 3, 1, 1)); masks are scored when the detector predicts them."""
    from tqdm.auto import tqdm

    device = module_device(detector)
    box, sizes = ap_metric(per_category=True), SizeBuckets(buckets)
    segm = MeanAveragePrecision(iou_type="segm", backend="pycocotools")
    with_masks = False
    for batch in tqdm(batches, desc="evaluating", disable=not progress, leave=False):
        if len(batch) == 0:
            continue
        batch = batch.to(device)
        images = (batch.pixel_values * std.to(device) + mean.to(device)).clamp(0, 1)
        predictions = detector.predict(images, batch.pixel_mask)
        truth = detection_targets(batch.targets)
        box.update([p.as_dict() for p in predictions], truth)
        sizes.update(predictions, batch.targets, truth)
        if predictions and predictions[0].masks is not None:
            with_masks = True
            segm.update(
                [{"masks": p.masks, "scores": p.scores, "labels": p.labels} for p in predictions],
                [{"masks": t.masks.bool(), "labels": t.labels} for t in batch.targets],
            )
    result = Evaluation(APScores.from_metric(box.compute()), sizes.compute())
    if with_masks:
        masks = segm.compute()
        result.mask_ap, result.mask_ap50 = float(masks["map"]), float(masks["map_50"])
    return result


def buckets_of(info: dict) -> dict[str, tuple[float, float]]:
    """The data's own area buckets (`info.area_buckets` of its COCO file), else COCO's."""
    recorded = info.get("area_buckets") if isinstance(info, dict) else None
    if not recorded:
        return dict(COCO_BUCKETS)
    return {name: (float(lo), float(hi)) for name, (lo, hi) in recorded.items()}
