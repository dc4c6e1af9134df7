"""The images an analysis runs on: a seeded, fixed subset of a split, held in memory.

Analyses compare reconstructions with inputs in [0, 1] RGB on the model-input canvas, and the
colour analysis edits those pixels before DETR sees them, so the subset keeps images (not
normalised tensors) and normalises them on the way into DETR.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from inverse_detr.data.coco import CocoDetection, Target
from inverse_detr.detectors.detr import forward_embeddings
from inverse_detr.errors import UserError
from inverse_detr.inverse.embeddings import ForwardEmbeddings

if TYPE_CHECKING:
    from inverse_detr.export import Inverter


class AnalysisError(UserError, ValueError):
    """An analysis that cannot run on the given images; the message is one line."""


@dataclass
class ImageSet:
    """images: (N, 3, H, W) RGB in [0, 1] on the canvas; pixel_mask: (N, H, W) long, 1 = real
    pixel; targets: N `Target`s (with instance masks when the dataset decoded them)."""

    images: torch.Tensor
    pixel_mask: torch.Tensor
    targets: list[Target]

    def __len__(self) -> int:
        return self.images.shape[0]

    def chunks(self, batch_size: int, progress: str = "") -> Iterator[ImageSet]:
        """Consecutive batches of at most `batch_size` images; a progress bar when named."""
        starts = range(0, len(self), batch_size)
        for start in tqdm(starts, desc=progress, disable=not progress, leave=False):
            end = start + batch_size
            yield ImageSet(
                self.images[start:end], self.pixel_mask[start:end], self.targets[start:end]
            )

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(
            self.images.to(device), self.pixel_mask.to(device), [t.to(device) for t in self.targets]
        )


def fixed_subset(dataset: CocoDetection, size: int, seed: int = 0) -> ImageSet:
    """`size` readable images of `dataset` in a seeded random order (all when size ≤ 0 or
    larger than the split). The same seed gives the same images, run after run."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    wanted = len(dataset) if size <= 0 else min(size, len(dataset))
    samples = []
    for index in order.tolist():
        sample = dataset[index]
        if sample is not None:  # unreadable images are skipped (and counted) by the dataset
            samples.append(sample)
        if len(samples) == wanted:
            break
    if not samples:
        raise AnalysisError(f"{dataset.coco_file}: no readable image to analyse")
    pixels = torch.stack([s.pixel_values for s in samples])  # (N, 3, H, W) normalised
    return ImageSet(
        dataset.transform.denormalize(pixels),
        torch.stack([s.pixel_mask for s in samples]),
        [s.target for s in samples],
    )


@torch.no_grad()
def embed(inverter: Inverter, images: torch.Tensor, pixel_mask: torch.Tensor) -> ForwardEmbeddings:
    """Every stage's embedding of canvas images (B, 3, H, W) in [0, 1]."""
    return forward_embeddings(inverter.detr, inverter.transform.normalize(images), pixel_mask)
