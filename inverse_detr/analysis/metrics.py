"""Detection metrics: DETR outputs and targets in the form torchmetrics' COCO AP expects."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision

from inverse_detr.detectors.detr import to_pixels


def detection_targets(targets: list) -> list[dict[str, torch.Tensor]]:
    """Ground truth of `Target`s in the same pixel frame as `detr_predictions`, crowd regions
    included with `iscrowd` 1 (COCO's protocol: detections matching them are ignored)."""
    return [_with_crowds(t) for t in targets]


def _with_crowds(target) -> dict[str, torch.Tensor]:
    boxes = torch.cat([target.boxes.float(), target.crowd_boxes.float().to(target.boxes.device)])
    labels = torch.cat([target.labels, target.crowd_labels.to(target.labels.device)])
    iscrowd = torch.zeros_like(labels)
    iscrowd[len(target.labels) :] = 1
    return {"boxes": to_pixels(boxes, target.size), "labels": labels, "iscrowd": iscrowd}


def ap_metric(per_category: bool = False, iou_type: str = "bbox") -> MeanAveragePrecision:
    """COCO-protocol AP (pycocotools backend) of boxes ("bbox") or masks ("segm"), optionally
    per category."""
    return MeanAveragePrecision(
        box_format="xyxy", iou_type=iou_type, class_metrics=per_category, backend="pycocotools"
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


def image_mse(recon: torch.Tensor, images: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """Per-image MSE over the real (unpadded) pixels: the one image-MSE definition of the
    project (training metrics and analyses alike). recon, images: (B, 3, H, W) in [0, 1];
    pixel_mask: (B, H, W), 1 = real pixel. Returns (B,)."""
    weight = pixel_mask.unsqueeze(1).to(images.dtype)  # (B, 1, H, W)
    values = (weight.sum((1, 2, 3)) * images.shape[1]).clamp_min(1.0)  # (B,) real values
    return ((recon - images) ** 2 * weight).sum((1, 2, 3)) / values


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of per-image MSEs of [0, 1] images: 10·log10(1 / mse), (B,) → (B,).
    Averaged over images (not pooled over the dataset's pixels) wherever it is reported."""
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def masked_mean_image(images: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) mean over images of each pixel's real values (0 where none is real)."""
    weight = pixel_mask.unsqueeze(1).to(images.dtype)  # (B, 1, H, W)
    return (images * weight).sum(0, keepdim=True) / weight.sum(0, keepdim=True).clamp_min(1.0)


class WeightedMean(Metric):
    """A weighted mean that keeps NaN: a diverged value shows instead of being dropped
    (torchmetrics' `MeanMetric` drops NaN by default, and its `nan_strategy="disable"` ignored
    the weights in the release these machines carry)."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, weight: float | torch.Tensor = 1.0) -> None:
        """value: a scalar or (N,) values; weight: one weight for each (broadcast)."""
        value = value.detach().double().reshape(-1)
        weight = torch.as_tensor(weight, dtype=torch.float64, device=value.device)
        weight = weight.reshape(-1).expand_as(value)
        self.total = self.total + (value * weight).sum()
        self.weight = self.weight + weight.sum()

    def compute(self) -> torch.Tensor:
        return (self.total / self.weight).float()


class MeanImageBaseline(Metric):
    """Image MSE of always guessing the mean image, by the definitions above: each image
    scored with `image_mse` against `masked_mean_image` of all images seen, averaged.

    Streams: per-pixel sums, each image weighted by 1 / its number of real values, so that
    the mean image need not be known until `compute` (states sum across DDP ranks).
    """

    full_state_update = False

    def __init__(self, image_size: tuple[int, int] | None = None, **kwargs) -> None:
        """image_size: (H, W) of every image, so that the states have their shape from the
        start (needed under DDP, where a rank may see no image); None: set by the first
        update."""
        super().__init__(**kwargs)
        # per pixel: (3, H, W) for channel sums, (1, H, W) for mask sums; a count; float64
        size = tuple(image_size or ())
        shapes = dict.fromkeys(("squares", "weighted", "total"), (3, *size) if size else ())
        shapes |= dict.fromkeys(("weights", "real"), (1, *size) if size else ())
        for name, shape in shapes.items():
            self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, images: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> None:
        """images: (B, 3, H, W) in [0, 1]; pixel_mask: (B, H, W), 1 = real (None: all real)."""
        images = images.double()
        if self.total.dim() and self.total.shape != images.shape[1:]:
            raise ValueError(
                f"mean-image baseline needs one image size, got {tuple(self.total.shape)}"
                f" and {tuple(images.shape[1:])}"
            )
        if pixel_mask is None:
            pixel_mask = images.new_ones(images.shape[0], *images.shape[2:])
        m = pixel_mask.double().unsqueeze(1)  # (B, 1, H, W)
        w = m / (m.sum((1, 2, 3), keepdim=True) * images.shape[1]).clamp_min(1.0)
        self.squares = self.squares + (w * images**2).sum(0)
        self.weighted = self.weighted + (w * images).sum(0)
        self.weights = self.weights + w.sum(0)
        self.total = self.total + (m * images).sum(0)
        self.real = self.real + m.sum(0)
        self.count = self.count + images.shape[0]

    def compute(self) -> torch.Tensor:
        mean = self.total / self.real.clamp_min(1.0)  # (3, H, W) the masked mean image
        sums = self.squares - 2 * mean * self.weighted + mean**2 * self.weights
        return (sums.sum() / self.count).float()
