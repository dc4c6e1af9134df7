"""Several inverse chains on the same images: which keeps the image, which falls back to the
mean image?

The paper compares inverse modules trained each against its own stage with a chain trained end
to end from the decoder embedding, and finds the latter greyer, closer to the mean image. Per
chain, reconstructing from one stage (the deepest every chain holds), means over images:
  mse_to_image   [0, 1] pixels, real (unpadded) pixels only (`metrics.image_mse`)
  mse_to_mean    the same against the subset's mean image (low: the chain guesses the mean)
  saturation     HSV saturation, mean over real pixels (kornia; low: greyer)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import kornia
import torch

from inverse_detr.analysis.metrics import image_mse, masked_mean_image
from inverse_detr.analysis.stages import VARIANTS, available_stages
from inverse_detr.analysis.subset import AnalysisError, ImageSet, embed

if TYPE_CHECKING:
    from inverse_detr.export import Inverter

INPUT = "input"  # the examples column of the images themselves


@dataclass
class ChainScores:
    """Means over the images; see the module docstring."""

    mse_to_image: float
    mse_to_mean: float
    saturation: float


@dataclass
class ChainsResult:
    """Scores per chain (by the name it was given) reconstructing from `stage`, the input's
    saturation, and example columns (title → (k, 3, H, W)) for a grid."""

    stage: str
    scores: dict[str, ChainScores]
    input_saturation: float
    images: int
    examples: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "images": self.images,
            "input_saturation": self.input_saturation,
            "chains": {name: vars(s) for name, s in self.scores.items()},
        }


def saturation(images: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """images: (B, 3, H, W) RGB in [0, 1]; pixel_mask: (B, H, W) → (B,) mean HSV saturation
    over each image's real pixels."""
    sat = kornia.color.rgb_to_hsv(images.float())[:, 1]  # (B, H, W) in [0, 1]
    weight = pixel_mask.to(sat.dtype)
    return (sat * weight).sum((1, 2)) / weight.sum((1, 2)).clamp_min(1.0)


def common_stage(inverters: dict[str, Inverter]) -> str:
    """The deepest analysis stage (backbone < encoder < decoder < head) every chain holds."""
    held = [set(available_stages(inv.chain)) for inv in inverters.values()]
    shared = [s for s in ("head", "decoder", "encoder", "backbone") if all(s in h for h in held)]
    if not shared:
        raise AnalysisError(f"the chains {sorted(inverters)} share no stage to reconstruct from")
    return shared[0]


@torch.no_grad()
def compare_chains(
    inverters: dict[str, Inverter],
    subset: ImageSet,
    stage: str | None = None,
    batch_size: int = 16,
    examples: int = 6,
    progress: bool = True,
) -> ChainsResult:
    """Reconstruct every image of `subset` from `stage` (default: `common_stage`) with each
    chain (name → Inverter; each embeds the images with its own DETR) and score it."""
    if len(inverters) < 2:
        raise AnalysisError(f"comparing chains needs at least two, got {len(inverters)}")
    stage = stage or common_stage(inverters)
    device = next(iter(inverters.values())).device
    subset = subset.to(device)
    mean_image = masked_mean_image(subset.images, subset.pixel_mask)  # (1, 3, H, W)
    sums = {name: torch.zeros(3, dtype=torch.float64) for name in inverters}
    input_saturation = 0.0
    shown = {INPUT: subset.images[:examples].cpu()}
    chain_stage, soft = VARIANTS[stage]
    for batch in subset.chunks(batch_size, "chains" if progress else ""):
        mask = batch.pixel_mask
        input_saturation += float(saturation(batch.images, mask).double().sum())
        for name, inverter in inverters.items():
            emb = embed(inverter, batch.images.to(inverter.device), mask.to(inverter.device))
            recon = inverter.chain.reconstruct(emb, chain_stage, soft=soft).to(device)
            scores = torch.stack(
                [
                    image_mse(recon, batch.images, mask),
                    image_mse(recon, mean_image.expand_as(recon), mask),
                    saturation(recon, mask),
                ]
            )  # (3, B)
            sums[name] += scores.double().sum(1).cpu()
            shown.setdefault(name, recon[:examples].cpu())
    shown["mean image"] = mean_image.expand(len(shown[INPUT]), -1, -1, -1).cpu()
    n = len(subset)
    scores = {name: ChainScores(*(float(v) / n for v in sums[name])) for name in inverters}
    return ChainsResult(stage, scores, input_saturation / n, n, shown)
