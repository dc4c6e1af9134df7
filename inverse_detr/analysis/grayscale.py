"""Grayscale input: does colour come back when DETR only ever saw a gray image?

The whole input is converted to gray (kornia's `rgb_to_grayscale`, the colour filters' `gray`:
three equal channels) before DETR sees it. For every stage the chain reconstructs from:
  mse_to_gray        image MSE of the reconstruction against the gray input it came from
  mse_to_color       ... against the original colour image: lower than mse_to_gray means the
                     stage puts (the right) colour back
  hue_to_prototype   per object, the circular distance (degrees; 90° is chance) from the hue
                     of the reconstruction inside its mask (saturation-weighted circular mean,
                     `color.masked_hue`) to its category's prototype hue; per category and
                     over all objects
  saturation         mean saturation of the reconstruction inside the objects (0: still gray)
  ap                 the detector's AP on the colour and on the gray images
"input" in the hue tables is the original colour image: how near its objects' hues lie to the
prototypes is what a reconstruction that restored the class colour would reach.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch

from inverse_detr.analysis.color import circular_distance, circular_mean, masked_hue
from inverse_detr.analysis.metrics import APScores, ap_metric, detection_targets, image_mse
from inverse_detr.analysis.objects import batch_objects
from inverse_detr.analysis.stages import VARIANTS, available_stages
from inverse_detr.analysis.subset import AnalysisError, ImageSet, embed
from inverse_detr.data.recolor import recolor
from inverse_detr.detectors.detr import detr_predictions

if TYPE_CHECKING:
    from inverse_detr.export import Inverter

INPUTS = ("color", "gray")  # the two inputs the detector's AP is measured on


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] → (B, 3, H, W): each pixel's luma in all three channels."""
    everywhere = torch.ones_like(images[:, 0], dtype=torch.bool)  # (B, H, W)
    return recolor(images, everywhere, "gray")


@dataclass
class CategoryHue:
    """One category at one stage: its prototype hue, the circular mean hue of its objects
    (None when every object is gray), their mean distance to the prototype, mean saturation,
    and how many objects (with a hue) were measured. Degrees."""

    prototype: float | None
    hue: float | None
    to_prototype: float | None
    saturation: float | None
    objects: int
    with_hue: int


@dataclass
class GrayscaleResult:
    """Per stage s (reconstructions from the gray input; hue keys also hold "input", the colour
    image): mse_to_gray[s], mse_to_color[s] (means over images); hue_to_prototype[s],
    saturation[s] (means over objects); categories[s][category id] (`CategoryHue`); ap["color"
    | "gray"]. None marks an undefined mean. examples: column title → (k, 3, H, W)."""

    stages: list[str]
    mse_to_gray: dict[str, float]
    mse_to_color: dict[str, float]
    hue_to_prototype: dict[str, float | None]
    saturation: dict[str, float | None]
    categories: dict[str, dict[int, CategoryHue]]
    ap: dict[str, APScores]
    images: int
    objects: int
    examples: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        record = {k: v for k, v in vars(self).items() if k not in ("examples", "ap")}
        record["categories"] = {
            s: {c: asdict(h) for c, h in by_category.items()}
            for s, by_category in self.categories.items()
        }
        return record | {"ap": {name: asdict(scores) for name, scores in self.ap.items()}}


class _Sums:
    """Running per-image MSE sums per stage and per-object hues and saturations."""

    def __init__(self, device: torch.device) -> None:
        self.mse: dict[tuple[str, str], float] = defaultdict(float)
        self.hues: dict[tuple[str, int], list[float]] = defaultdict(list)
        self.sats: dict[tuple[str, int], list[float]] = defaultdict(list)
        self.ap = {name: ap_metric(per_category=True).to(device) for name in INPUTS}

    def add_hues(self, stage: str, images: torch.Tensor, objects: tuple) -> None:
        """images: (B, 3, H, W); objects: owners (M,), masks (M, H, W), labels (M,)."""
        owners, masks, labels = objects
        seen = masks.flatten(1).any(1)  # an object without a visible pixel has no colour
        hue, sat = masked_hue(images, masks[seen], owners[seen])  # (M',) each
        for c, h, s in zip(labels[seen].tolist(), hue.tolist(), sat.tolist(), strict=True):
            self.hues[stage, c].append(h)
            self.sats[stage, c].append(s)


def category_hue(hues: list[float], sats: list[float], prototype: float | None) -> CategoryHue:
    """Summarise one category's object hues and saturations (degrees; NaN: a gray object)."""
    defined = torch.tensor([h for h in hues if not math.isnan(h)], dtype=torch.float64)
    distances = circular_distance(defined, prototype) if prototype is not None else None
    return CategoryHue(
        prototype,
        float(circular_mean(defined)) if len(defined) else None,
        float(distances.mean()) if distances is not None and len(defined) else None,
        sum(sats) / len(sats) if sats else None,
        len(hues),
        len(defined),
    )


@torch.no_grad()
def grayscale_analysis(
    inverter: Inverter,
    subset: ImageSet,
    prototypes: dict[int, float],
    stages: list[str] | None = None,
    batch_size: int = 8,
    examples: int = 4,
    progress: bool = True,
) -> GrayscaleResult:
    """Feed `subset` to DETR in gray; score every stage's reconstruction (default: each one
    the chain holds). prototypes: category id → prototype hue in degrees
    (`color.prototype_hues`; a category without one has no distance). The subset must carry
    instance masks."""
    stages = stages or available_stages(inverter.chain)
    if not stages:
        raise AnalysisError("grayscale analysis needs a chain that reconstructs from some stage")
    subset, sums, shown = subset.to(inverter.device), _Sums(inverter.device), {}
    for batch in subset.chunks(batch_size, "grayscale" if progress else ""):
        gray = to_grayscale(batch.images)
        emb = _detect(inverter, batch, gray, sums)
        objects = batch_objects(batch.targets)
        sums.add_hues("input", batch.images, objects)
        columns = {"colour input": batch.images, "gray input": gray}
        for stage in stages:
            chain_stage, soft = VARIANTS[stage]
            columns[stage] = recon = inverter.chain.reconstruct(emb, chain_stage, soft=soft)
            sums.mse[stage, "gray"] += float(image_mse(recon, gray, batch.pixel_mask).sum())
            sums.mse[stage, "color"] += float(
                image_mse(recon, batch.images, batch.pixel_mask).sum()
            )
            sums.add_hues(stage, recon, objects)
        for title, images in columns.items():
            shown.setdefault(title, images[:examples].cpu())
    return _result(sums, stages, prototypes, len(subset), shown)


def _detect(inverter: Inverter, batch: ImageSet, gray: torch.Tensor, sums: _Sums):
    """Run DETR on the colour and the gray images (AP of each); the gray ones' embeddings."""
    sizes, targets = [t.size for t in batch.targets], detection_targets(batch.targets)
    for name, images in zip(INPUTS, (batch.images, gray), strict=True):
        emb = embed(inverter, images, batch.pixel_mask)
        sums.ap[name].update(detr_predictions(emb.logits, emb.boxes, sizes), targets)
    return emb  # the gray input's


def _result(
    sums: _Sums, stages: list[str], prototypes: dict[int, float], images: int, shown: dict
) -> GrayscaleResult:
    keys = ["input", *stages]
    ids = sorted({c for _, c in sums.hues})
    by_stage = {
        s: {c: category_hue(sums.hues[s, c], sums.sats[s, c], prototypes.get(c)) for c in ids}
        for s in keys
    }
    objects = sum(len(sums.hues["input", c]) for c in ids)
    return GrayscaleResult(
        stages=stages,
        mse_to_gray={s: sums.mse[s, "gray"] / images for s in stages},
        mse_to_color={s: sums.mse[s, "color"] / images for s in stages},
        hue_to_prototype={s: _pooled(by_stage[s], "to_prototype", "with_hue") for s in keys},
        saturation={s: _pooled(by_stage[s], "saturation", "objects") for s in keys},
        categories=by_stage,
        ap={name: APScores.from_metric(metric.compute()) for name, metric in sums.ap.items()},
        images=images,
        objects=objects,
        examples=shown,
    )


def _pooled(by_category: dict[int, CategoryHue], value: str, count: str) -> float | None:
    """The mean over all objects of a per-category mean, weighted by its object count."""
    pairs = [(getattr(h, value), getattr(h, count)) for h in by_category.values()]
    pairs = [(v, n) for v, n in pairs if v is not None and n]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None
