"""Train any subset of the four inverse modules against a frozen DETR, from ONE forward pass.

What each stage learns to give back is `inverse_detr.inverse.losses` (its `stage_loss`); one
frozen pass per batch feeds every stage's loss. The stage losses touch disjoint parameters, so
one optimiser with a parameter group per stage (own learning rate, own schedule) computes
exactly what separate per-stage optimisers would. `objective=end_to_end` instead trains the chain
decoder → encoder → backbone by one image loss (the paper's end-to-end comparison).
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning.pytorch as pl
import torch
from torch import nn
from transformers import DetrForObjectDetection

from inverse_detr.analysis.metrics import MeanImageBaseline, WeightedMean, image_mse, psnr
from inverse_detr.data.batch import Batch
from inverse_detr.detectors.detr import forward_embeddings
from inverse_detr.inverse.chain import REQUIRED_MODULES, STAGES, InverseChain
from inverse_detr.inverse.embeddings import ForwardEmbeddings
from inverse_detr.inverse.losses import (
    END_TO_END_STAGES,
    OBJECTIVES,
    Pixels,
    end_to_end_loss,
    stage_loss,
)
from inverse_detr.lit.cache import SPLITS, EmbeddingCache, shard_ids
from inverse_detr.lit.guards import NonFiniteGuard, zero_loss

# what picks the best checkpoint: the geometric mean of the trained stages' validation losses.
# Scale-free (the stages' losses live on unrelated scales, so their sum is ruled by the
# largest): a checkpoint wins when its stages improved by a larger factor on (geometric) average
SELECTION_METRIC = "val/geomean_mse"
DEFAULT_LR = {"backbone": 3e-3, "encoder": 1e-3, "decoder": 1e-4, "head": 3e-3}


class InversionModule(pl.LightningModule):
    """A frozen DETR plus the inverse chain being trained (every module `chain` holds).

    mean, std: the DETR's input normalisation (the backbone loss compares normalised pixels).
    image_size: (H, W) of the input canvas, so that the mean-image baseline's states have one
    shape on every DDP rank (None: taken from the first validation images; one process only).
    The DETR is kept out of checkpoints: it is reloaded by name, so checkpoints stay small.
    Its CNN backbone's weights are put in channels_last memory (`save_detr` writes them back
    contiguous).
    """

    def __init__(
        self,
        detr: DetrForObjectDetection,
        chain: InverseChain,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        lr: Mapping[str, float] | None = None,
        weight_decay: float = 0.0,
        schedule: str = "none",
        objective: str = "stagewise",
        compile: bool = False,
        on_nonfinite: str = "stop",
        image_size: tuple[int, int] | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        super().__init__()
        self.lr = {**DEFAULT_LR, **dict(lr or {})}
        self.save_hyperparameters(
            {
                "lr": self.lr,
                "weight_decay": weight_decay,
                "schedule": schedule,
                "objective": objective,
            }
        )
        self.detr = detr.eval().requires_grad_(False)
        # a layout change only: the frozen forward ran 2–22 % faster in three runs (BENCHMARKS.md)
        self.detr.model.backbone.to(memory_format=torch.channels_last)
        self.chain = chain
        self.stages = tuple(s for s in STAGES if getattr(chain, s) is not None)
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
        if objective == "end_to_end" and self.stages != END_TO_END_STAGES:
            raise ValueError(f"objective end_to_end trains exactly {END_TO_END_STAGES}")
        self.objective = objective
        # the checkpoint to keep: all stages' own losses, or the one image loss end to end
        self.selection_metric = (
            SELECTION_METRIC if objective == "stagewise" else "val/decoder/image_mse"
        )
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.compile_modules = compile
        self._compiled = False
        self.nonfinite = NonFiniteGuard(on_nonfinite)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.strict_loading = False  # checkpoints omit the frozen DETR
        self.cache = cache  # the frozen DETR's targets per image (trainer.embedding_cache)
        # stages whose whole chain to pixels is trained here: their images can be scored
        self.image_stages = [s for s in STAGES if set(REQUIRED_MODULES[s]) <= set(self.stages)]
        # per-image scores averaged over images (analysis.metrics: one definition everywhere)
        # means that keep NaN: a diverged batch shows instead of being dropped
        self.val_image_mse = nn.ModuleDict({s: WeightedMean() for s in self.image_stages})
        self.val_psnr = nn.ModuleDict({s: WeightedMean() for s in self.image_stages})
        self.val_baseline = MeanImageBaseline(image_size)
        self.val_stage_mse = nn.ModuleDict({s: WeightedMean() for s in self.stages})

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

    def setup(self, stage: str) -> None:
        """Open the embedding cache's stores for this rank's images (once per run)."""
        if self.cache is None or self.cache.splits or self.trainer.datamodule is None:
            return
        dm, rank, world = self.trainer.datamodule, self.trainer.global_rank, self.trainer.world_size
        ids = {s: shard_ids(dm.dataset(s).image_ids, rank, world) for s in SPLITS}
        self.cache.open(self.detr, self.stages, ids, rank)

    def on_train_epoch_end(self) -> None:
        if self.cache is not None:
            self.cache.end_epoch("train")

    def on_train_start(self) -> None:
        self.train()  # Lightning keeps modules' own modes; the inverse modules must train

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("detr.")]:
            del state[key]

    # -- losses ----------------------------------------------------------------------------
    def embed(self, batch: Batch, split: str | None = None) -> ForwardEmbeddings:
        """The frozen forward pass: all stage embeddings, without autograd history; read from
        the embedding cache of `split` when it holds every image of the batch (then only the
        fields the trained stages read are set)."""
        if self.cache is not None:
            return self.cache.embed(self.detr, batch, split)
        with torch.no_grad():
            return forward_embeddings(self.detr, batch.pixel_values, batch.pixel_mask)

    def stage_losses(self, emb: ForwardEmbeddings, batch: Batch) -> dict[str, torch.Tensor]:
        """MSE of each trained stage against its true target (inputs are detached)."""
        return {s: self.stage_loss(s, emb, batch) for s in STAGES if s in self.stages}

    def training_losses(self, emb: ForwardEmbeddings, batch: Batch) -> dict[str, torch.Tensor]:
        """What the objective trains on: every stage's own MSE, or the one end-to-end loss."""
        if self.objective == "stagewise":
            return self.stage_losses(emb, batch)
        pixels = Pixels(batch.pixel_values, batch.pixel_mask, self.mean, self.std)
        return {"end_to_end": end_to_end_loss(self.chain, emb, pixels)}

    def stage_loss(self, stage: str, emb: ForwardEmbeddings, batch: Batch) -> torch.Tensor:
        """One stage's MSE; on its own so that the benchmark times each stage alone."""
        pixels = Pixels(batch.pixel_values, batch.pixel_mask, self.mean, self.std)
        return stage_loss(self.chain, stage, emb, pixels)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if batch.skipped:
            self.log("train/skipped_images", float(batch.skipped), reduce_fx="sum", on_epoch=True)
        if len(batch) == 0:
            return zero_loss(self.chain)
        losses = self.training_losses(self.embed(batch, "train"), batch)
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
        emb = self.embed(batch, "val")
        losses = self.stage_losses(emb, batch)
        for stage, loss in losses.items():
            self.val_stage_mse[stage].update(loss, weight=len(batch))
        truth = (batch.pixel_values * self.std + self.mean).clamp(0, 1)  # (B, 3, H, W) RGB
        self.val_baseline.update(truth, batch.pixel_mask)
        for stage in self.image_stages:
            mse = image_mse(self.chain.reconstruct(emb, stage), truth, batch.pixel_mask)  # (B,)
            self.val_image_mse[stage].update(mse)
            self.val_psnr[stage].update(psnr(mse))

    def on_validation_epoch_end(self) -> None:
        """Every rank computes every metric (each compute is a collective under DDP), also a
        rank that saw no image."""
        if self.cache is not None:
            self.cache.end_epoch("val")
        means = {stage: m.compute() for stage, m in self.val_stage_mse.items()}
        for stage, mean in means.items():
            self.log(f"val/{stage}/mse", mean)
        stacked = torch.stack(list(means.values()))
        self.log("val/loss", stacked.sum(), prog_bar=True)  # the sum of the stages' means
        self.log(SELECTION_METRIC, stacked.clamp_min(1e-12).log().mean().exp())
        for stage in self.image_stages:
            self.log(f"val/{stage}/image_mse", self.val_image_mse[stage].compute())
            self.log(f"val/{stage}/psnr", self.val_psnr[stage].compute())
        self.log("val/baseline/image_mse", self.val_baseline.compute())
        for metric in (*self.val_stage_mse.values(), *self.val_image_mse.values()):
            metric.reset()
        for metric in (*self.val_psnr.values(), self.val_baseline):
            metric.reset()

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
