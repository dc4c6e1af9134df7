"""Colour perturbation: recolour objects, watch what each stage's reconstruction keeps.

For every colour filter (see `inverse_detr.data.recolor`) applied inside the masks of the
chosen objects (categories, mask area ≥ `min_area` of the image):
  pairwise MSE   per stage, the mean MSE between the reconstructions of the same image under
                 two filters: 0 means the stage forgot the colour, as if it were never changed;
  hue distance   per stage and object, the circular distance (degrees) from the hue of the
                 reconstruction inside the object's mask to the hue of the recoloured input,
                 and to the category's prototype hue: colour fading toward the prototype in
                 deeper stages shows the class, not the pixels, driving the colour;
  AP             per filter and category, the detector's robustness to the recolouring.
Hues are circular means weighted by saturation (a gray pixel has no hue); an object whose
pixels are all gray has no hue and is left out of the hue means (the gray filter's input).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

import torch

from inverse_detr.analysis.metrics import APScores, ap_metric, detection_targets
from inverse_detr.analysis.stages import VARIANTS, available_stages
from inverse_detr.analysis.subset import AnalysisError, ImageSet, embed, fixed_subset
from inverse_detr.data.coco import CocoDetection, Target
from inverse_detr.data.recolor import FILTERS, hue_degrees, recolor
from inverse_detr.detectors.detr import detr_predictions

if TYPE_CHECKING:
    from inverse_detr.export import Inverter

MIN_AREA = 0.3  # of the image, as in the reference code (92,160 px of 640×480)


def circular_distance(a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """Distance between hues in degrees, on the circle: in [0, 180]."""
    d = torch.remainder(torch.as_tensor(a) - b, 360.0)
    return torch.minimum(d, 360.0 - d)


def masked_hue(
    images: torch.Tensor, masks: torch.Tensor, owners: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean hue (degrees, NaN where every pixel is gray) and mean saturation inside each mask.

    images: (B, 3, H, W) RGB in [0, 1];  masks: (M, H, W) bool;  owners: (M,) the image each
    mask lies in (default: mask k in image k, M = B) → two (M,) tensors.
    """
    hue, sat = hue_degrees(images)  # (B, H, W) each, converted once per image
    if owners is not None:
        hue, sat = hue[owners], sat[owners]  # (M, H, W)
    inside = masks.to(sat.dtype)
    weight = sat * inside  # a gray pixel has no hue: weighted by saturation
    mean = circular_mean(hue.flatten(1), weight.flatten(1))
    return mean, weight.sum((1, 2)) / inside.sum((1, 2)).clamp_min(1.0)


def circular_mean(degrees: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted circular mean over the last dim, degrees in [0, 360); NaN where the weights
    sum to ~0. degrees, weights: (..., N) → (...)."""
    weights = torch.ones_like(degrees) if weights is None else weights
    angle = torch.deg2rad(degrees)
    sin, cos = (weights * angle.sin()).sum(-1), (weights * angle.cos()).sum(-1)
    mean = torch.remainder(torch.rad2deg(torch.atan2(sin, cos)), 360.0)
    return torch.where(weights.sum(-1) > 1e-6, mean, torch.full_like(mean, math.nan))


def pairwise_mse(recons: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """recons: (F, B, 3, H, W) the same images under F filters → (F, F) MSE summed over the
    B images (divide by the image count for the mean), real pixels only."""
    weight = pixel_mask.unsqueeze(1).to(recons.dtype)  # (B, 1, H, W)
    pixels = (weight.sum((1, 2, 3)) * 3).clamp_min(1.0)  # (B,)
    out = torch.zeros(len(recons), len(recons), dtype=torch.float64, device=recons.device)
    for i, j in torch.triu_indices(len(recons), len(recons), offset=1).T.tolist():
        out[i, j] = out[j, i] = (
            ((recons[i] - recons[j]) ** 2 * weight).sum((1, 2, 3)) / pixels
        ).sum()
    return out


def selected_objects(target: Target, categories: list[int] | None, min_area: float) -> list[int]:
    """Indices of the objects to recolour: chosen category (None: any), visible mask area ≥
    min_area of the real image."""
    h, w = target.size
    area = target.masks.flatten(1).sum(1).float() / (h * w)  # (N,)
    return [
        k
        for k in range(len(target.labels))
        if area[k] >= min_area and (categories is None or int(target.labels[k]) in categories)
    ]


def prototype_hues(train: CocoDetection, max_images: int = 200, seed: int = 0) -> dict[int, float]:
    """Category id → prototype hue (degrees): the categories' `prototype_hue` metadata when
    every category has one (the shapes world), else the circular mean hue of the category's
    objects over `max_images` seeded training images (real data)."""
    recorded = {cid: c.get("prototype_hue") for cid, c in train.categories.items()}
    if all(hue is not None for hue in recorded.values()):
        return {cid: float(hue) for cid, hue in recorded.items()}
    subset = fixed_subset(train, max_images, seed)
    hues = defaultdict(list)
    for image, target in zip(subset.images, subset.targets, strict=True):
        owners = torch.zeros(len(target.labels), dtype=torch.long)  # every mask in this image
        object_hues, _ = masked_hue(image[None], target.masks, owners)
        for cid, hue in zip(target.labels.tolist(), object_hues.tolist(), strict=True):
            if not math.isnan(hue):
                hues[cid].append(hue)
    return {cid: float(circular_mean(torch.tensor(h))) for cid, h in hues.items()}


def _mean(values: list[float]) -> float | None:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


@dataclass
class ColorResult:
    """Per stage s and filter f (means over the recoloured objects or images):
    pairwise[s]          F×F mean MSE between reconstructions under filters (order: filters)
    mean_pairwise[s]     mean over the filter pairs i < j
    hue_to_input[s][f]   degrees from the reconstruction's hue to the recoloured input's
    hue_to_prototype[s][f], saturation[s][f]   also for s = "input", the recoloured input
    ap[f]                the detector's AP on the recoloured images (per category inside)
    None marks an undefined mean (e.g. the hue of gray inputs)."""

    filters: list[str]
    stages: list[str]
    pairwise: dict[str, list[list[float]]]
    mean_pairwise: dict[str, float]
    hue_to_input: dict[str, dict[str, float | None]]
    hue_to_prototype: dict[str, dict[str, float | None]]
    saturation: dict[str, dict[str, float | None]]
    ap: dict[str, APScores]
    objects: int
    images: int
    images_without_objects: int
    examples: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "examples"}
        record["ap"] = {name: asdict(scores) for name, scores in self.ap.items()}
        return record


@dataclass
class _Picked:
    """The images holding objects to recolour, with those objects: per image, the union of
    their masks (H, W), their masks (M_i, H, W) and category ids (M_i,)."""

    images: ImageSet
    unions: list[torch.Tensor]
    masks: list[torch.Tensor]
    labels: list[torch.Tensor]

    @classmethod
    def select(cls, subset: ImageSet, categories: list[int] | None, min_area: float) -> _Picked:
        keep, unions, masks, labels = [], [], [], []
        for index, target in enumerate(subset.targets):
            chosen = selected_objects(target, categories, min_area)
            if chosen:
                keep.append(index)
                masks.append(target.masks[chosen])
                unions.append(target.masks[chosen].any(0))
                labels.append(target.labels[chosen])
        images = ImageSet(
            subset.images[keep], subset.pixel_mask[keep], [subset.targets[i] for i in keep]
        )
        return cls(images, unions, masks, labels)

    def batches(self, size: int, progress: bool):
        for start, batch in zip(
            range(0, len(self.images), size),
            self.images.chunks(size, "colour" if progress else ""),
            strict=True,
        ):
            part = slice(start, start + size)
            yield batch, self.unions[part], self.masks[part], self.labels[part]


class _Sums:
    """Running sums and per-object values of the colour metrics."""

    def __init__(self, filters: list[str], stages: list[str], device: torch.device) -> None:
        self.filters, self.stages = filters, stages
        self.pairwise = {
            s: torch.zeros(len(filters), len(filters), dtype=torch.float64) for s in stages
        }
        self.values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.ap = {f: ap_metric(per_category=True).to(device) for f in filters}

    def add_objects(
        self,
        name: str,
        stage: str,
        images: torch.Tensor,
        owners: torch.Tensor,
        masks: torch.Tensor,
        labels: torch.Tensor,
        prototypes: dict[int, float],
        inputs_hue: torch.Tensor | None,
    ) -> torch.Tensor:
        """Record the hue and saturation of `images` (B, 3, H, W) inside each object's mask
        (M, H, W) of image owners[m] and category labels[m]; returns the hues (M,)."""
        hue, sat = masked_hue(images, masks, owners)  # (M,) each
        protos = torch.tensor([prototypes.get(int(c), math.nan) for c in labels])
        self.values["prototype", stage, name] += circular_distance(hue.cpu(), protos).tolist()
        self.values["saturation", stage, name] += sat.tolist()
        if inputs_hue is not None:
            self.values["input", stage, name] += circular_distance(hue, inputs_hue).tolist()
        return hue

    def means(self, kind: str, stages: list[str]) -> dict[str, dict[str, float | None]]:
        return {s: {f: _mean(self.values[kind, s, f]) for f in self.filters} for s in stages}


@torch.no_grad()
def color_analysis(
    inverter: Inverter,
    subset: ImageSet,
    prototypes: dict[int, float],
    filters: list[str] | tuple[str, ...] = FILTERS,
    categories: list[int] | None = None,
    min_area: float = MIN_AREA,
    stages: list[str] | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> ColorResult:
    """Recolour the chosen objects of `subset` with each filter; score every stage.

    prototypes: category id → prototype hue in degrees (`prototype_hues`).
    The subset must carry instance masks (a dataset built with `with_masks=True`).
    """
    filters = list(filters)
    if len(filters) < 2 or len(set(filters)) < len(filters):
        raise ValueError(f"colour analysis compares ≥ 2 distinct filters, got {filters}")
    stages = stages or [s for s in available_stages(inverter.chain) if s != "head_soft"]
    if not stages:
        raise AnalysisError("colour analysis needs a chain that reconstructs from some stage")
    picked = _Picked.select(subset.to(inverter.device), categories, min_area)
    if not len(picked.images):
        which = "any category" if categories is None else f"categories {categories}"
        raise AnalysisError(
            f"no object of {which} covers ≥ {min_area:.0%} of an image among the "
            f"{len(subset)} analysed images: lower min_area or analyse more images"
        )
    sums, examples = _Sums(filters, stages, inverter.device), {}
    for batch, unions, masks, labels in picked.batches(batch_size, progress):
        device = batch.images.device
        owners = torch.cat([torch.full((len(m),), i, device=device) for i, m in enumerate(masks)])
        objects = (owners, torch.cat(masks), torch.cat(labels).cpu(), prototypes)
        recons = [
            _filtered(inverter, batch, torch.stack(unions), name, objects, sums, examples)
            for name in filters
        ]  # per filter: stage → (B, 3, H, W)
        for stage in stages:
            stacked = torch.stack([r[stage] for r in recons])  # (F, B, 3, H, W)
            sums.pairwise[stage] += pairwise_mse(stacked, batch.pixel_mask).cpu()
    return _result(sums, picked, len(subset), examples)


def _filtered(
    inverter: Inverter,
    batch: ImageSet,
    unions: torch.Tensor,
    name: str,
    objects: tuple,
    sums: _Sums,
    examples: dict,
) -> dict[str, torch.Tensor]:
    """Recolour `batch` inside `unions` (B, H, W) with filter `name`, run DETR (AP) and every
    stage's reconstruction (hue metrics); returns stage → (B, 3, H, W) reconstruction."""
    inputs = recolor(batch.images, unions, name)
    emb = embed(inverter, inputs, batch.pixel_mask)
    sizes = [t.size for t in batch.targets]
    predictions = detr_predictions(emb.logits, emb.boxes, sizes)
    sums.ap[name].update(predictions, detection_targets(batch.targets))
    input_hue = sums.add_objects(name, "input", inputs, *objects, None)
    examples.setdefault(f"{name}: input", inputs[:1].cpu())
    recons = {}
    for stage in sums.stages:
        chain_stage, soft = VARIANTS[stage]
        recons[stage] = inverter.chain.reconstruct(emb, chain_stage, soft=soft)
        sums.add_objects(name, stage, recons[stage], *objects, input_hue)
        examples.setdefault(f"{name}: {stage}", recons[stage][:1].cpu())
    return recons


def _result(sums: _Sums, picked: _Picked, analysed: int, examples: dict) -> ColorResult:
    count = len(picked.images)
    pairwise = {s: (m / count).tolist() for s, m in sums.pairwise.items()}
    pairs = torch.triu_indices(len(sums.filters), len(sums.filters), offset=1)
    return ColorResult(
        filters=sums.filters,
        stages=sums.stages,
        pairwise=pairwise,
        mean_pairwise={
            s: float((m / count)[pairs[0], pairs[1]].mean()) for s, m in sums.pairwise.items()
        },
        hue_to_input=sums.means("input", sums.stages),
        hue_to_prototype=sums.means("prototype", ["input", *sums.stages]),
        saturation=sums.means("saturation", ["input", *sums.stages]),
        ap={f: APScores.from_metric(metric.compute()) for f, metric in sums.ap.items()},
        objects=sum(len(m) for m in picked.masks),
        images=count,
        images_without_objects=analysed - count,
        examples=_example_grid(examples, sums.filters, ["input", *sums.stages]),
    )


def _example_grid(examples: dict, filters: list[str], columns: list[str]) -> dict:
    """The first recoloured image: one row per filter, one column per stage (title → (F, 3,
    H, W)), ready for `reconstruction_grid`."""
    return {c: torch.cat([examples[f"{f}: {c}"] for f in filters]) for c in columns}
