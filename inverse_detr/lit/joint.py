"""Joint fine-tuning: DETR and the inverse chain together, loss λ·L_rec + (1−λ)·L_det.

λ weights reconstruction, as in the reference code. L_det is DETR's Hungarian set loss from
transformers (1·CE + 5·L1 + 2·GIoU, no-object weight 0.1, with auxiliary decoder losses);
L_rec is the MSE, in normalised pixel space, of the image reconstructed from the last decoder
layer through the whole inverse chain (decoder → encoder → backbone). λ = 0 is plain DETR
training (the chain is not even run); λ = 1 trains on reconstruction alone.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torchmetrics import MeanMetric
from transformers import DetrForObjectDetection

from inverse_detr.analysis.metrics import APScores, ap_metric, detection_targets, detr_predictions
from inverse_detr.data.datamodule import Batch
from inverse_detr.detr import forward_embeddings
from inverse_detr.embeddings import ForwardEmbeddings
from inverse_detr.inverse.chain import InverseChain
from inverse_detr.lit.inversion import masked_mse

JOINT_STAGES = ("backbone", "encoder", "decoder")


class JointModule(pl.LightningModule):
    """A trainable DETR plus the inverse chain decoder → encoder → backbone → pixels.

    mean, std: the DETR's input normalisation.  lr: AdamW learning rates for the DETR's CNN
    backbone, the rest of the DETR (transformer, heads, projections) and the inverse chain.
    """

    def __init__(
        self,
        detr: DetrForObjectDetection,
        chain: InverseChain,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        lam: float = 0.5,
        lr_backbone: float = 1e-5,
        lr_transformer: float = 1e-5,
        lr_inverse: float = 1e-4,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"λ must lie in [0, 1], got {lam}")
        missing = [s for s in JOINT_STAGES if getattr(chain, s) is None]
        if missing:
            raise ValueError(f"joint mode needs the inverse {', '.join(missing)}")
        self.save_hyperparameters(
            {
                "lam": lam,
                "lr_backbone": lr_backbone,
                "lr_transformer": lr_transformer,
                "lr_inverse": lr_inverse,
                "weight_decay": weight_decay,
            }
        )
        detr.config.auxiliary_loss = True  # DETR's loss on every decoder layer
        self.detr = detr.train().requires_grad_(True)
        self.chain = chain
        self.lam = lam
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.val_ap = ap_metric()
        self.val_rec = MeanMetric()

    def losses(self, batch: Batch, emb: ForwardEmbeddings) -> dict[str, torch.Tensor]:
        """The weighted total and its parts; a part with weight 0 is not computed at all."""
        parts: dict[str, torch.Tensor] = {}
        total = batch.pixel_values.new_zeros(())
        if self.lam < 1.0:
            parts["det"] = emb.detection_loss
            total = total + (1.0 - self.lam) * emb.detection_loss
        if self.lam > 0.0:
            parts["rec"] = self.reconstruction_loss(batch, emb)
            total = total + self.lam * parts["rec"]
        parts["loss"] = total
        return parts

    def reconstruction_loss(self, batch: Batch, emb: ForwardEmbeddings) -> torch.Tensor:
        image = self.chain.reconstruct(emb, "decoder")  # (B, 3, H, W) in [0, 1]
        normalised = (image - self.mean) / self.std
        return masked_mse(normalised, batch.pixel_values, batch.pixel_mask)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        if len(batch) == 0:
            return None
        labels = [t.as_hf_labels() for t in batch.targets] if self.lam < 1.0 else None
        emb = forward_embeddings(self.detr, batch.pixel_values, batch.pixel_mask, labels)
        parts = self.losses(batch, emb)
        for name, value in parts.items():
            self.log(f"train/{name}", value, prog_bar=True, batch_size=len(batch))
        return parts["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        emb = forward_embeddings(self.detr, batch.pixel_values, batch.pixel_mask)
        size = tuple(batch.pixel_values.shape[-2:])
        self.val_ap.update(
            detr_predictions(emb.logits, emb.boxes, size),
            detection_targets(
                [t.labels for t in batch.targets], [t.boxes for t in batch.targets], size
            ),
        )
        self.val_rec.update(self.reconstruction_loss(batch, emb), weight=len(batch))

    def on_validation_epoch_end(self) -> None:
        scores = APScores.from_metric(self.val_ap.compute())
        self.val_ap.reset()
        self.log_dict(
            {"val/ap": scores.ap, "val/ap50": scores.ap50, "val/ap75": scores.ap75}, prog_bar=True
        )
        self.log("val/rec_mse", self.val_rec.compute())
        self.val_rec.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        backbone = list(self.detr.model.backbone.parameters())
        ids = {id(p) for p in backbone}
        transformer = [p for p in self.detr.parameters() if id(p) not in ids]
        groups = [
            {"params": backbone, "lr": self.hparams.lr_backbone, "name": "detr_backbone"},
            {"params": transformer, "lr": self.hparams.lr_transformer, "name": "detr_transformer"},
            {
                "params": list(self.chain.parameters()),
                "lr": self.hparams.lr_inverse,
                "name": "inverse",
            },
        ]
        return torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)
