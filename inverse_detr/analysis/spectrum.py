"""Which spatial frequencies each stage keeps: the reconstruction error split into radial
frequency bands.

By Parseval, an image's MSE is the sum over frequencies of its error's power spectrum, so the
error splits exactly into bands that add up to `metrics.image_mse`. The bands are set by the
DETR's stride s, in cycles per pixel, from the token grid's Nyquist frequency ν = 1/(2s):
  [0, ν/2), [ν/2, ν), [ν, 2ν), [2ν, 4ν), [4ν, ∞)
(for s = 16: periods over 64 px, 32–64, 16–32, 8–16 and under 8 px). Below ν the token grid
itself can carry the signal; above it only the channels can. Per band and stage: the error's
power, and the power of the image around the subset's mean image — the error of the
mean-image baseline, so `1 − error / image` is the share of the band the stage keeps.
Padding counts as zero error: powers are normalised by each image's real pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING

import torch

from inverse_detr.analysis.metrics import masked_mean_image
from inverse_detr.analysis.stages import VARIANTS, available_stages
from inverse_detr.analysis.subset import ImageSet, embed
from inverse_detr.detectors.detr import backbone_stride

if TYPE_CHECKING:
    from inverse_detr.export import Inverter

BAND_EDGES = (0.0, 0.5, 1.0, 2.0, 4.0)  # lower edges in units of the token Nyquist 1/(2s)


def band_labels(stride: int) -> list[str]:
    """Each band as the periods it holds in pixels, e.g. "8–16 px" (for the tables)."""
    nyquist = 1.0 / (2 * stride)
    periods = [1.0 / (e * nyquist) if e else float("inf") for e in (*BAND_EDGES, float("inf"))]
    labels = []
    for longest, shortest in pairwise(periods):
        if longest == float("inf"):
            labels.append(f"> {shortest:g} px")
        elif shortest == 0.0:
            labels.append(f"< {longest:g} px")
        else:
            labels.append(f"{shortest:g}–{longest:g} px")
    return labels


def band_power(error: torch.Tensor, pixel_mask: torch.Tensor, stride: int) -> torch.Tensor:
    """error: (B, C, H, W), set to zero here where padded; pixel_mask: (B, H, W), 1 = real
    pixel → (B, len(BAND_EDGES)) power per band, per real value: summed over bands it equals
    `metrics.image_mse` of the error."""
    weight = pixel_mask.unsqueeze(1).to(error.dtype)  # (B, 1, H, W)
    height, width = error.shape[-2:]
    spectrum = torch.fft.fft2((error * weight).double()).abs() ** 2  # (B, C, H, W)
    fy = torch.fft.fftfreq(height, device=error.device, dtype=torch.float64)
    fx = torch.fft.fftfreq(width, device=error.device, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) * (2 * stride)  # in units of ν
    band = torch.bucketize(radius, torch.tensor(BAND_EDGES[1:], dtype=torch.float64), right=True)
    per_band = torch.zeros(
        error.shape[0], len(BAND_EDGES), dtype=torch.float64, device=error.device
    )
    per_band.index_add_(1, band.flatten(), spectrum.sum(1).flatten(1))
    values = (weight.sum((1, 2, 3)) * error.shape[1]).clamp_min(1.0).double()  # (B,)
    return (per_band / (height * width) / values[:, None]).float()


@dataclass
class SpectrumResult:
    """Mean error power per band (len(BAND_EDGES) values) per analysis stage, and the images'
    own power around their mean image (the baseline's error), over `images` images."""

    stride: int
    error: dict[str, list[float]]
    image: list[float]
    images: int
    labels: list[str] = field(default_factory=list)

    def kept(self, stage: str) -> list[float]:
        """Per band, the share of the image's power the stage reconstructs: 1 − error / image."""
        return [1.0 - e / i if i > 0 else float("nan") for e, i in zip(
            self.error[stage], self.image, strict=True
        )]  # fmt: skip

    def to_dict(self) -> dict:
        return {
            "stride": self.stride,
            "images": self.images,
            "bands": self.labels,
            "image_power": self.image,
            "error_power": self.error,
            "kept": {stage: self.kept(stage) for stage in self.error},
        }


@torch.no_grad()
def spectrum_analysis(
    inverter: Inverter,
    subset: ImageSet,
    stages: list[str] | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> SpectrumResult:
    """Error power per frequency band of the reconstructions from each stage (default: the
    chain's stages but head_soft) of every image of `subset`."""
    stages = stages or [s for s in available_stages(inverter.chain) if s != "head_soft"]
    stride = backbone_stride(inverter.detr)  # training callbacks' inverters carry no spec
    subset = subset.to(inverter.device)
    mean_image = masked_mean_image(subset.images, subset.pixel_mask)
    sums = {name: torch.zeros(len(BAND_EDGES), dtype=torch.float64) for name in ("image", *stages)}
    for batch in subset.chunks(batch_size, "spectrum" if progress else ""):
        mask = batch.pixel_mask
        sums["image"] += band_power(batch.images - mean_image, mask, stride).sum(0).cpu()
        emb = embed(inverter, batch.images, mask)
        for name in stages:
            stage, soft = VARIANTS[name]
            recon = inverter.chain.reconstruct(emb, stage, soft=soft)
            sums[name] += band_power(recon - batch.images, mask, stride).sum(0).cpu()
    n = len(subset)
    means = {name: (value / n).tolist() for name, value in sums.items()}
    image = means.pop("image")
    return SpectrumResult(stride, means, image, n, band_labels(stride))
