"""Detection mode: a classic detector (RetinaNet, FCOS, Faster / Mask R-CNN) trained from scratch
with its own torchvision losses, validated by COCO box AP (and mask AP for Mask R-CNN)."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from inverse_detr.analysis.metrics import APScores, ap_metric, detection_targets
from inverse_detr.data.batch import Batch
from inverse_detr.detectors.classic import ClassicDetector
from inverse_detr.detectors.detr import to_pixels
from inverse_detr.lit.guards import NonFiniteGuard, zero_loss


class DetectionModule(pl.LightningModule):
    """`detector.module` trained on batches of the data module.

    mean, std: the data's input normalisation (its pixel values are turned back into [0, 1]
    images, which the detector normalises itself).
    """

    def __init__(
        self,
        detector: ClassicDetector,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 200,
        on_nonfinite: str = "stop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "family": detector.name,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_steps": warmup_steps,
            }
        )
        self.detector = detector
        self.model = detector.module
        self.masks = detector.name == "mask_rcnn"
        self.nonfinite = NonFiniteGuard(on_nonfinite)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.val_ap = ap_metric()
        self.val_mask_ap = ap_metric(iou_type="segm")

    def images(self, batch: Batch) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1]."""
        return (batch.pixel_values * self.std + self.mean).clamp(0, 1)

    def targets(self, batch: Batch) -> list[dict[str, torch.Tensor]]:
        """torchvision's training targets: boxes xyxy pixels, labels, masks (Mask R-CNN)."""
        out = []
        for t in batch.targets:
            target = {"boxes": to_pixels(t.boxes.float(), t.size), "labels": t.labels}
            if self.masks:
                target["masks"] = t.masks.to(torch.uint8)
            out.append(target)
        return out

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if len(batch) == 0:
            return zero_loss(self.model)
        self.model.train()
        losses = self.model(list(self.images(batch)), self.targets(batch))
        if not self.nonfinite.passes(self, losses):
            return zero_loss(self.model)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=len(batch))
        total = torch.stack(list(losses.values())).sum()
        self.log("train/loss", total, prog_bar=True, batch_size=len(batch))
        return total

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        predictions = self.detector.predict(self.images(batch))
        self.val_ap.update([p.as_dict() for p in predictions], detection_targets(batch.targets))
        if self.masks:
            truth = [{"masks": t.masks.to(torch.uint8), "labels": t.labels} for t in batch.targets]
            found = [
                {"masks": p.masks.to(torch.uint8), "scores": p.scores, "labels": p.labels}
                for p in predictions
            ]
            self.val_mask_ap.update(found, truth)

    def on_validation_epoch_end(self) -> None:
        scores = APScores.from_metric(self.val_ap.compute())
        self.val_ap.reset()
        self.log_dict(
            {"val/ap": scores.ap, "val/ap50": scores.ap50, "val/ap75": scores.ap75}, prog_bar=True
        )
        if self.masks:
            masks = self.val_mask_ap.compute()
            self.log_dict({"val/mask_ap": masks["map"], "val/mask_ap50": masks["map_50"]})
            self.val_mask_ap.reset()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.nonfinite.drop_gradients(optimizer)

    def configure_optimizers(self):
        """AdamW with a linear warm-up, then cosine to 0 over the run's steps."""
        h = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay, fused=True)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(h.warmup_steps, total // 2)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
        return {
            "optimizer": optimiser,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
