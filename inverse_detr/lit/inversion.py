"""Train any subset of the four inverse modules against a frozen DETR, from ONE forward pass.

Each module learns its forward stage's input from its output on the TRUE forward embeddings
(inputs detached), so one frozen pass per batch feeds every stage's loss:
  backbone: B → image   (MSE of normalised pixels, the reference code's loss)
  encoder:  E → B       decoder: D → E (the encoder output, not B as in the public code)
  head:     (class code ⊕ boxes) → D
The stage losses touch disjoint parameters, so one optimiser with a parameter group per stage
(own learning rate, own schedule) computes exactly what separate per-stage optimisers would.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MeanSquaredError
from torchmetrics.image import PeakSignalNoiseRatio
from transformers import DetrForObjectDetection

from inverse_detr.data.batch import Batch
from inverse_detr.detectors.detr import forward_embeddings
from inverse_detr.inverse.chain import REQUIRED_MODULES, STAGES, fit_to_size
from inverse_detr.inverse.embeddings import ForwardEmbeddings
from inverse_detr.inverse.spec import ChainSpec, build_chain
from inverse_detr.lit.guards import NonFiniteGuard

DEFAULT_LR = {"backbone": 3e-3, "encoder": 1e-3, "decoder": 1e-4, "head": 3e-3}


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the positions where `mask` is true.

    pred, target: (B, N, C) tokens or (B, C, H, W) pixels;  mask: (B, N) or (B, H, W)
    """
    if pred.dim() == 4:
        weight = mask.unsqueeze(1).to(pred.dtype)  # (B, 1, H, W)
        channels = pred.shape[1]
    else:
        weight = mask.unsqueeze(-1).to(pred.dtype)  # (B, N, 1)
        channels = pred.shape[-1]
    return ((pred - target) ** 2 * weight).sum() / (weight.sum() * channels).clamp_min(1.0)


class InversionModule(pl.LightningModule):
    """A frozen DETR plus the inverse chain being trained.

    mean, std: the DETR's input normalisation (the backbone loss compares normalised pixels).
    The DETR is kept out of checkpoints: it is reloaded by name, so checkpoints stay small.
    Its CNN backbone's weights are put in channels_last memory (`save_detr` writes them back
    contiguous).
    """

    def __init__(
        self,
        detr: DetrForObjectDetection,
        spec: ChainSpec,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        lr: Mapping[str, float] | None = None,
        weight_decay: float = 0.0,
        schedule: str = "none",
        compile: bool = False,
        on_nonfinite: str = "stop",
    ) -> None:
        super().__init__()
        self.lr = {**DEFAULT_LR, **dict(lr or {})}
        self.save_hyperparameters(
            {
                "spec": spec.to_json(),
                "lr": self.lr,
                "weight_decay": weight_decay,
                "schedule": schedule,
            }
        )
        self.detr = detr.eval().requires_grad_(False)
        # a layout change only: the frozen forward ran 2–22 % faster in three runs (BENCHMARKS.md)
        self.detr.model.backbone.to(memory_format=torch.channels_last)
        self.spec = spec
        self.chain = build_chain(spec)
        self.stages = tuple(spec.stages)
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.compile_modules = compile
        self._compiled = False
        self.nonfinite = NonFiniteGuard(on_nonfinite)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.strict_loading = False  # checkpoints omit the frozen DETR
        # stages whose whole chain to pixels is trained here: their images can be scored
        self.image_stages = [s for s in STAGES if set(REQUIRED_MODULES[s]) <= set(self.stages)]
        self.val_image_mse = nn.ModuleDict({s: MeanSquaredError() for s in self.image_stages})
        self.val_psnr = nn.ModuleDict(
            {s: PeakSignalNoiseRatio(data_range=1.0) for s in self.image_stages}
        )
        self.val_baseline = _MeanImageBaseline()

    # -- modes and checkpoints -------------------------------------------------------------
    def train(self, mode: bool = True) -> InversionModule:
        """Inverse modules follow `mode`; the DETR always stays in eval mode (frozen targets)."""
        super().train(mode)
        self.detr.eval()
        return self

    def configure_model(self) -> None:
        """Compile in place (parameter names unchanged); Lightning calls this on every fit or
        validate, so only once."""
        if self.compile_modules and not self._compiled:
            for name in self.stages:
                getattr(self.chain, name).compile()
            self._compiled = True

    def on_train_start(self) -> None:
        self.train()  # Lightning keeps modules' own modes; the inverse modules must train

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("detr.")]:
            del state[key]

    # -- losses ----------------------------------------------------------------------------
    def embed(self, batch: Batch) -> ForwardEmbeddings:
        """The frozen forward pass: all stage embeddings, without autograd history."""
        with torch.no_grad():
            return forward_embeddings(self.detr, batch.pixel_values, batch.pixel_mask)

    def stage_losses(self, emb: ForwardEmbeddings, batch: Batch) -> dict[str, torch.Tensor]:
        """MSE of each trained stage against its true target (inputs are detached)."""
        return {s: self.stage_loss(s, emb, batch) for s in STAGES if s in self.stages}

    def stage_loss(self, stage: str, emb: ForwardEmbeddings, batch: Batch) -> torch.Tensor:
        """One stage's MSE; on its own so that the benchmark times each stage alone."""
        chain = self.chain
        if stage == "backbone":
            pixels = chain.backbone(emb.backbone, emb.grid)  # (B, 3, H'·s, W'·s) in [0, 1]
            pixels = fit_to_size(pixels, batch.pixel_values.shape[-2:])
            normalised = (pixels - self.mean) / self.std
            return masked_mse(normalised, batch.pixel_values, batch.pixel_mask)
        if stage == "encoder":
            pred = chain.encoder(emb.encoder, emb.spatial_pos, emb.mask)  # (B, HW, d)
            return masked_mse(pred, emb.backbone, emb.mask)
        if stage == "decoder":
            pred = chain.decoder(emb.decoder, emb.spatial_pos, emb.mask)  # (B, HW, d)
            return masked_mse(pred, emb.encoder, emb.mask)
        if stage == "head":
            pred = chain.head(emb.logits, emb.boxes)  # (B, Q, d)
            valid = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
            return masked_mse(pred, emb.decoder, valid)
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if batch.skipped:
            self.log("train/skipped_images", float(batch.skipped), reduce_fx="sum", on_epoch=True)
        if len(batch) == 0:
            return zero_loss(self.chain)
        losses = self.stage_losses(self.embed(batch), batch)
        if not self.nonfinite.passes(self, losses):
            return zero_loss(self.chain)
        for stage, loss in losses.items():
            self.log(f"train/{stage}/mse", loss, prog_bar=True, batch_size=len(batch))
        total = torch.stack(list(losses.values())).sum()
        self.log("train/loss", total, batch_size=len(batch))
        return total

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        emb = self.embed(batch)
        losses = self.stage_losses(emb, batch)
        n = len(batch)
        for stage, loss in losses.items():
            self.log(f"val/{stage}/mse", loss, batch_size=n, sync_dist=True)
        self.log(
            "val/loss",
            torch.stack(list(losses.values())).sum(),
            batch_size=n,
            sync_dist=True,
            prog_bar=True,
        )
        truth = (batch.pixel_values * self.std + self.mean).clamp(0, 1)  # (B, 3, H, W) RGB
        self.val_baseline.update(truth)
        for stage in self.image_stages:
            image = self.chain.reconstruct(emb, stage).contiguous()
            self.val_image_mse[stage].update(image, truth)
            self.val_psnr[stage].update(image, truth)

    def on_validation_epoch_end(self) -> None:
        for stage in self.image_stages:
            self.log(f"val/{stage}/image_mse", self.val_image_mse[stage].compute())
            self.log(f"val/{stage}/psnr", self.val_psnr[stage].compute())
            self.val_image_mse[stage].reset()
            self.val_psnr[stage].reset()
        if self.val_baseline.count > 0:
            self.log("val/baseline/image_mse", self.val_baseline.compute())
        self.val_baseline.reset()

    # -- optimisation ----------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.nonfinite.drop_gradients(optimizer)

    def configure_optimizers(self):
        groups = [
            {"params": list(getattr(self.chain, s).parameters()), "lr": self.lr[s], "name": s}
            for s in self.stages
        ]
        # fused: one kernel per step instead of a loop over tensors, on CPUs too (torch ≥ 2.4);
        # 2–4× faster than for-loop or foreach for the reference chain's 96 M parameters
        optimiser = torch.optim.Adam(groups, weight_decay=self.weight_decay, fused=True)
        if self.schedule == "none":
            return optimiser
        if self.schedule != "cosine":
            raise ValueError(f"unknown schedule {self.schedule!r}; allowed: none, cosine")
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
        return {
            "optimizer": optimiser,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def zero_loss(module: nn.Module) -> torch.Tensor:
    """A 0 that touches every trainable parameter: what a step with no usable image returns,
    so that DDP's gradient reduction still meets every rank (returning None would hang it)."""
    return sum(p.sum() for p in module.parameters() if p.requires_grad) * 0.0


class _MeanImageBaseline(nn.Module):
    """MSE of always guessing the mean image: mean over pixels of E[x²] − E[x]².

    Accumulates per-pixel sums over the validation images (summed across ranks under DDP).
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = self.squares = None
        self.count = 0

    def update(self, images: torch.Tensor) -> None:
        """images: (B, 3, H, W) in [0, 1]."""
        images = images.double()
        if self.total is not None and self.total.shape != images.shape[1:]:
            raise ValueError(
                f"mean-image baseline needs one image size, got {tuple(self.total.shape)}"
                f" and {tuple(images.shape[1:])}"
            )
        if self.total is None:
            self.total = torch.zeros_like(images[0])
            self.squares = torch.zeros_like(images[0])
        self.total += images.sum(0)
        self.squares += (images**2).sum(0)
        self.count += images.shape[0]

    def compute(self) -> torch.Tensor:
        total, squares = self.total.clone(), self.squares.clone()
        count = torch.tensor(float(self.count), dtype=torch.float64, device=total.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for tensor in (total, squares, count):
                torch.distributed.all_reduce(tensor)
        mean = total / count
        return (squares / count - mean**2).mean().float()

    def reset(self) -> None:
        self.total = self.squares = None
        self.count = 0
