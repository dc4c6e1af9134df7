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

from inverse_detr.analysis.metrics import APScores, ap_metric, detection_targets
from inverse_detr.data.batch import Batch
from inverse_detr.detectors.detr import detection_loss, detr_predictions, forward_embeddings
from inverse_detr.inverse.chain import InverseChain
from inverse_detr.inverse.embeddings import ForwardEmbeddings
from inverse_detr.inverse.losses import Pixels, end_to_end_loss
from inverse_detr.lit.guards import NonFiniteGuard, zero_loss

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
        on_nonfinite: str = "stop",
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
        self.detr = detr.train()
        self.chain = chain
        self.lam = lam
        self.nonfinite = NonFiniteGuard(on_nonfinite)
        # a parameter no loss reaches would stall DDP's gradient reduction: freeze it
        if lam == 0.0:
            chain.requires_grad_(False)
        if lam == 1.0:
            detr.class_labels_classifier.requires_grad_(False)
            detr.bbox_predictor.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.val_ap = ap_metric()
        self.val_rec = MeanMetric()

    def losses(self, batch: Batch, emb: ForwardEmbeddings) -> dict[str, torch.Tensor]:
        """The weighted total and its parts; a part with weight 0 is not computed at all."""
        parts: dict[str, torch.Tensor] = {}
        total = batch.pixel_values.new_zeros(())
        if self.lam < 1.0:
            labels = [t.as_hf_labels() for t in batch.targets]
            parts["det"] = detection_loss(self.detr, emb, labels)
            total = total + (1.0 - self.lam) * parts["det"]
        if self.lam > 0.0:
            parts["rec"] = self.reconstruction_loss(batch, emb)
            total = total + self.lam * parts["rec"]
        parts["loss"] = total
        return parts

    def reconstruction_loss(self, batch: Batch, emb: ForwardEmbeddings) -> torch.Tensor:
        """L_rec: the same image loss from the decoder embedding as inverse.objective=end_to_end."""
        pixels = Pixels(batch.pixel_values, batch.pixel_mask, self.mean, self.std)
        return end_to_end_loss(self.chain, emb, pixels)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if len(batch) == 0:
            return zero_loss(self)
        emb = forward_embeddings(self.detr, batch.pixel_values, batch.pixel_mask)
        parts = self.losses(batch, emb)
        if not self.nonfinite.passes(self, {k: v for k, v in parts.items() if k != "loss"}):
            return zero_loss(self)
        for name, value in parts.items():
            self.log(f"train/{name}", value, prog_bar=True, batch_size=len(batch))
        return parts["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        emb = forward_embeddings(self.detr, batch.pixel_values, batch.pixel_mask)
        sizes = [t.size for t in batch.targets]
        self.val_ap.update(
            detr_predictions(emb.logits, emb.boxes, sizes), detection_targets(batch.targets)
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

    def on_train_start(self) -> None:
        self.train()  # a chain loaded for analysis comes in eval mode; BatchNorm must train

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.nonfinite.drop_gradients(optimizer)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over what trains: parameters frozen by HF (stem, layer1) or by λ stay out."""
        in_backbone = {id(p) for p in self.detr.model.backbone.parameters()}
        trainable = [p for p in self.detr.parameters() if p.requires_grad]
        groups = [
            {
                "params": [p for p in trainable if id(p) in in_backbone],
                "lr": self.hparams.lr_backbone,
                "name": "detr_backbone",
            },
            {
                "params": [p for p in trainable if id(p) not in in_backbone],
                "lr": self.hparams.lr_transformer,
                "name": "detr_transformer",
            },
            {
                "params": [p for p in self.chain.parameters() if p.requires_grad],
                "lr": self.hparams.lr_inverse,
                "name": "inverse",
            },
        ]
        groups = [g for g in groups if g["params"]]
        # fused: one kernel per step, on CPUs too (see InversionModule.configure_optimizers)
        return torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay, fused=True)
