"""DETR (any Hugging Face `DetrForObjectDetection`) behind the `Detector` interface."""

from __future__ import annotations

import copy

import torch
from torchvision.ops import box_convert
from transformers import DetrForObjectDetection
from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

from inverse_detr.detectors.detr import detr_predictions
from inverse_detr.detectors.interface import Candidates, Prediction, softmax_log_odds

UNNAMED = ("N/A",)  # HF's COCO DETRs name their unused ids so


def detr_categories(detr: DetrForObjectDetection) -> dict[int, str]:
    """Category id → name from the model's `id2label` (every id below the "no object" logit),
    without the ids HF's COCO DETRs leave unused ("N/A")."""
    return {int(i): name for i, name in detr.config.id2label.items() if name not in UNNAMED}


class DetrDetector:
    """A DETR behind the `Detector` interface. Every query is a candidate detection (scored by
    its best real class), as in DETR's own COCO evaluation."""

    name = "detr"

    def __init__(
        self,
        detr: DetrForObjectDetection,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        categories: dict[int, str] | None = None,
    ) -> None:
        self.module = detr
        self.mean, self.std = tuple(mean), tuple(std)
        self.categories = categories or detr_categories(detr)

    @property
    def max_detections(self) -> int:
        """One detection per query."""
        return self.module.config.num_queries

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def raw_outputs(
        self, images: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """logits (B, Q, C + 1) with "no object" last; pred_boxes (B, Q, 4) normalised cxcywh.
        pixel_mask: (B, H, W), 1 = real pixel (None: all real)."""
        self.module.eval()
        out = self.module(pixel_values=self._normalise(images), pixel_mask=pixel_mask)
        return {"logits": out.logits, "pred_boxes": out.pred_boxes}

    def losses(self, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        """DETR's Hungarian set loss terms per image (last decoder layer): loss_ce, loss_bbox,
        loss_giou (HF's `ForObjectDetectionLoss`, unweighted terms)."""
        raw = self.raw_outputs(images)
        h, w = images.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=images.dtype, device=images.device)
        config = copy.copy(self.module.config)
        config.auxiliary_loss = False  # the last layer's terms (HF would want its aux outputs)
        rows = []
        for i, target in enumerate(targets):
            boxes = box_convert(target["boxes"] / scale, "xyxy", "cxcywh")
            labels = [{"class_labels": target["labels"], "boxes": boxes}]
            _, parts, _ = ForObjectDetectionLoss(
                raw["logits"][i : i + 1],
                labels,
                images.device,
                raw["pred_boxes"][i : i + 1],
                config,
            )
            rows.append(parts)
        return {k: torch.stack([r[k] for r in rows]) for k in ("loss_ce", "loss_bbox", "loss_giou")}

    def inversion_losses(
        self, images: torch.Tensor, targets: list[dict]
    ) -> dict[str, torch.Tensor]:
        """Per image {"cls", "reg"} toward the targets after DETR's Z-step: its own Hungarian
        matching of the target objects to the queries (matched queries get the object's class
        and box, the others "no object"), then its set loss — cls: the class cross-entropy
        (no-object weight `eos_coefficient`), reg: `bbox_loss_coefficient`·L1 +
        `giou_loss_coefficient`·(1 − GIoU)."""
        parts, config = self.losses(images, targets), self.module.config
        reg = config.bbox_loss_coefficient * parts["loss_bbox"]
        return {
            "cls": parts["loss_ce"],
            "reg": reg + config.giou_loss_coefficient * parts["loss_giou"],
        }

    def candidates(self, size: tuple[int, int]) -> Candidates:
        """The queries: no fixed place, no pyramid."""
        count = self.max_detections
        return Candidates(count, None, torch.zeros(count, dtype=torch.long))

    def candidate_log_score(
        self, images: torch.Tensor, candidate: int, category: int
    ) -> torch.Tensor:
        """(B,) log p(category) of query `candidate` (softmax over the classes and "no
        object")."""
        logits = self.raw_outputs(images)["logits"]  # (B, Q, C + 1)
        return logits[:, candidate].float().log_softmax(-1)[:, category]

    def candidate_log_odds(
        self, images: torch.Tensor, candidate: int, category: int
    ) -> torch.Tensor:
        """(B,) log-odds of query `candidate`'s p(category): z_k − logsumexp(z_others)."""
        return softmax_log_odds(self.raw_outputs(images)["logits"][:, candidate].float(), category)

    def candidate_box(
        self, images: torch.Tensor, candidate: int, category: int | None = None
    ) -> torch.Tensor:
        """(B, 4) xyxy canvas pixels: query `candidate`'s box (`category` is not used: a
        query has one box for every class)."""
        h, w = images.shape[-2:]
        box = self.raw_outputs(images)["pred_boxes"][:, candidate].float()  # (B, 4) cxcywh
        scale = torch.tensor([w, h, w, h], dtype=box.dtype, device=box.device)
        return box_convert(box * scale, "cxcywh", "xyxy")

    @torch.no_grad()
    def predict(
        self, images: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> list[Prediction]:
        raw = self.raw_outputs(images, pixel_mask)
        sizes = [tuple(images.shape[-2:])] * len(images)
        if pixel_mask is not None:  # DETR's boxes are relative to the real (unpadded) image
            heights, widths = pixel_mask.any(2).sum(1), pixel_mask.any(1).sum(1)
            sizes = [(int(h), int(w)) for h, w in zip(heights, widths, strict=True)]
        found = detr_predictions(raw["logits"], raw["pred_boxes"], sizes)
        return [Prediction(p["boxes"], p["scores"], p["labels"]) for p in found]
