"""Detection metrics: DETR outputs and targets in the form torchmetrics' COCO AP expects."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_convert


def _to_pixels(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, 4) normalised cxcywh → (N, 4) xyxy pixels on an (H, W) canvas."""
    h, w = image_size
    scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    return box_convert(boxes, "cxcywh", "xyxy") * scale


def detr_predictions(
    logits: torch.Tensor, boxes: torch.Tensor, sizes: list[tuple[int, int]]
) -> list[dict[str, torch.Tensor]]:
    """DETR's own post-processing: per query, the best real class and its probability.

    logits: (B, Q, C + 1) with "no object" last;  boxes: (B, Q, 4) normalised cxcywh of each
    image;  sizes: each image's (h, w) in pixels (`Target.size`).
    Every query is kept (AP ranks by score), as in DETR's COCO evaluation.
    """
    probs = logits.float().softmax(-1)[..., :-1]  # (B, Q, C): drop "no object"
    scores, labels = probs.max(-1)
    return [
        {"boxes": _to_pixels(b.float(), size), "scores": s, "labels": lab}
        for b, s, lab, size in zip(boxes, scores, labels, sizes, strict=True)
    ]


def detection_targets(targets: list) -> list[dict[str, torch.Tensor]]:
    """Ground truth of `Target`s in the same pixel frame as `detr_predictions`."""
    return [{"boxes": _to_pixels(t.boxes.float(), t.size), "labels": t.labels} for t in targets]


def ap_metric(per_category: bool = False) -> MeanAveragePrecision:
    """COCO-protocol box AP (pycocotools backend), optionally per category."""
    return MeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", class_metrics=per_category, backend="pycocotools"
    )


@dataclass
class APScores:
    """COCO box AP: ap (IoU .50:.95), ap50, ap75; per_category: category id → AP."""

    ap: float
    ap50: float
    ap75: float
    per_category: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_metric(cls, result: dict[str, torch.Tensor]) -> APScores:
        per_category = {}
        classes = result.get("classes")
        per_class = result.get("map_per_class")
        if classes is not None and per_class is not None and per_class.numel() == classes.numel():
            pairs = zip(classes.flatten().tolist(), per_class.flatten().tolist(), strict=True)
            # COCO reports −1 for a category without ground truth: it has no AP
            per_category = {int(c): v for c, v in pairs if v >= 0}
        return cls(
            float(result["map"]), float(result["map_50"]), float(result["map_75"]), per_category
        )


@torch.no_grad()
def evaluate_detector(detr, batches, per_category: bool = True, progress: bool = True) -> APScores:
    """COCO box AP of `detr` over an iterable of `Batch`es (e.g. a validation DataLoader).

    detr: any `DetrForObjectDetection` (put in eval mode here); runs on its own device.
    """
    from tqdm.auto import tqdm

    detr.eval()
    device = next(detr.parameters()).device
    metric = ap_metric(per_category)
    for batch in tqdm(batches, desc="evaluating", disable=not progress, leave=False):
        if len(batch) == 0:
            continue
        batch = batch.to(device)
        out = detr(pixel_values=batch.pixel_values, pixel_mask=batch.pixel_mask)
        sizes = [t.size for t in batch.targets]
        metric.update(
            detr_predictions(out.logits, out.pred_boxes, sizes), detection_targets(batch.targets)
        )
    return APScores.from_metric(metric.compute())


class MeanImageBaseline(Metric):
    """MSE of always guessing the mean image: the mean over pixels of E[x²] − E[x]².

    Accumulates per-pixel sums over the images it sees (summed across ranks under DDP, as
    every torchmetrics state is). All images must have one size.
    """

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # per-pixel sums, (3, H, W) once the first images arrive (a 0-d zero until then)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("squares", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, images: torch.Tensor) -> None:
        """images: (B, 3, H, W) in [0, 1]."""
        images = images.double()
        if self.total.dim() and self.total.shape != images.shape[1:]:
            raise ValueError(
                f"mean-image baseline needs one image size, got {tuple(self.total.shape)}"
                f" and {tuple(images.shape[1:])}"
            )
        self.total = self.total + images.sum(0)
        self.squares = self.squares + (images**2).sum(0)
        self.count = self.count + images.shape[0]

    def compute(self) -> torch.Tensor:
        mean = self.total / self.count
        return (self.squares / self.count - mean**2).mean().float()
