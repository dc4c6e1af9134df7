"""What each stage keeps: reconstructions from backbone / encoder / decoder / head, scored.

Scores per stage over a fixed image subset (means over images):
  mse             [0, 1] RGB pixels, real (unpadded) pixels only (`metrics.image_mse`)
  mse_normalised  the same in the DETR's normalised pixel space (the inverse backbone's loss)
  psnr            10·log10(1 / mse) per image, then averaged (dB) (`metrics.psnr`)
  ssim            torchmetrics' SSIM on the canvas, padding filled with the input
The baseline guesses the subset's mean image (of real pixels) for every image, scored the same
way: a stage whose reconstructions do not beat it has kept nothing image-specific.
"head" reconstructs from the one-hot of the argmax class (only the decision survives: one-hot
suppression); "head_soft" from the full class probabilities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from inverse_detr.analysis.metrics import image_mse, masked_mean_image, psnr
from inverse_detr.analysis.subset import AnalysisError, ImageSet, embed
from inverse_detr.inverse.chain import REQUIRED_MODULES, STAGES, InverseChain

if TYPE_CHECKING:
    from inverse_detr.export import Inverter

SCORES = ("mse", "mse_normalised", "psnr", "ssim")
# analysis stage → (chain stage, soft class code)
VARIANTS = {s: (s, None) for s in STAGES[:3]} | {
    "head": ("head", False),
    "head_soft": ("head", True),
}


@dataclass
class StageScores:
    """Means over the images; see the module docstring for each score."""

    mse: float
    mse_normalised: float
    psnr: float
    ssim: float


@dataclass
class StagesResult:
    """Scores per analysis stage (keys of VARIANTS the chain can reconstruct from), the
    mean-image baseline, and example columns (title → (k, 3, H, W)) for a grid."""

    scores: dict[str, StageScores]
    baseline: StageScores
    images: int
    examples: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "baseline": asdict(self.baseline),
            "stages": {name: asdict(s) for name, s in self.scores.items()},
        }


def available_stages(chain: InverseChain) -> list[str]:
    """The analysis stages whose whole inverse chain to pixels `chain` holds."""
    held = {name for name in STAGES if getattr(chain, name) is not None}
    return [v for v, (stage, _) in VARIANTS.items() if set(REQUIRED_MODULES[stage]) <= held]


def image_scores(
    recon: torch.Tensor, images: torch.Tensor, pixel_mask: torch.Tensor, std: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-image scores, each (B,). recon, images: (B, 3, H, W) in [0, 1]; pixel_mask:
    (B, H, W), 1 = real pixel; std: (3, 1, 1) the DETR's normalisation std."""
    std = std.to(images.device)
    mse = image_mse(recon, images, pixel_mask)
    filled = torch.where(pixel_mask.unsqueeze(1).bool(), recon, images)
    return {
        "mse": mse,
        "mse_normalised": image_mse(recon / std, images / std, pixel_mask),
        "psnr": psnr(mse),
        "ssim": structural_similarity_index_measure(
            filled, images, data_range=1.0, reduction="none"
        ),
    }


class ScoreSums:
    """Running sums of per-image scores, per key; `means()` gives StageScores."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, scores: dict[str, torch.Tensor]) -> None:
        into = self.sums.setdefault(key, dict.fromkeys(SCORES, 0.0))
        for name in SCORES:
            into[name] += float(scores[name].double().sum())
        self.counts[key] = self.counts.get(key, 0) + len(scores["mse"])

    def means(self, key: str) -> StageScores:
        return StageScores(**{k: v / self.counts[key] for k, v in self.sums[key].items()})


@torch.no_grad()
def stage_analysis(
    inverter: Inverter,
    subset: ImageSet,
    stages: list[str] | None = None,
    batch_size: int = 16,
    examples: int = 6,
    progress: bool = True,
) -> StagesResult:
    """Reconstruct every image of `subset` from each stage (default: all the chain holds)."""
    stages = stages or available_stages(inverter.chain)
    unknown = sorted(set(stages) - set(available_stages(inverter.chain)))
    if unknown or not stages:
        raise AnalysisError(
            f"cannot reconstruct from {unknown or 'any stage'}: this chain supports "
            f"{available_stages(inverter.chain)}"
        )
    subset = subset.to(inverter.device)
    std = inverter.transform.std
    mean_image = masked_mean_image(subset.images, subset.pixel_mask)  # the baseline's guess
    sums, shown = ScoreSums(), {"input": subset.images[:examples].cpu()}
    for batch in subset.chunks(batch_size, "stages" if progress else ""):
        emb = embed(inverter, batch.images, batch.pixel_mask)
        guess = mean_image.expand_as(batch.images)
        sums.add("baseline", image_scores(guess, batch.images, batch.pixel_mask, std))
        for name in stages:
            stage, soft = VARIANTS[name]
            recon = inverter.chain.reconstruct(emb, stage, soft=soft)
            sums.add(name, image_scores(recon, batch.images, batch.pixel_mask, std))
            if name not in shown:
                shown[name] = recon[:examples].cpu()
    shown["mean image"] = mean_image.expand(len(shown["input"]), -1, -1, -1).cpu()
    return StagesResult(
        {name: sums.means(name) for name in stages}, sums.means("baseline"), len(subset), shown
    )
