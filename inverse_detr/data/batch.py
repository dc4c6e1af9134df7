"""Batches of detector inputs: a collate that stacks images and keeps targets as lists."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inverse_detr.data.coco import Sample, Target


@dataclass
class Batch:
    """A collated batch.

    pixel_values: (B, 3, H, W) normalised images;  pixel_mask: (B, H, W) long, 1 = real pixel
    targets: B `Target`s;  skipped: unreadable images dropped from this batch
    """

    pixel_values: torch.Tensor
    pixel_mask: torch.Tensor
    targets: list[Target]
    skipped: int = 0

    def __len__(self) -> int:
        return self.pixel_values.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.pixel_values.to(device, non_blocking=non_blocking),
            self.pixel_mask.to(device, non_blocking=non_blocking),
            [t.to(device, non_blocking=non_blocking) for t in self.targets],
            self.skipped,
        )

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) on custom batch types."""
        return Batch(
            self.pixel_values.pin_memory(), self.pixel_mask.pin_memory(), self.targets, self.skipped
        )


def collate(samples: list[Sample | None]) -> Batch:
    """Stack images of equal size; drop and count the `None`s of skipped bad images."""
    kept = [s for s in samples if s is not None]
    if not kept:
        return Batch(
            torch.empty(0, 3, 1, 1),
            torch.empty(0, 1, 1, dtype=torch.long),
            [],
            skipped=len(samples),
        )
    return Batch(
        pixel_values=torch.stack([s.pixel_values for s in kept]),
        pixel_mask=torch.stack([s.pixel_mask for s in kept]),
        targets=[s.target for s in kept],
        skipped=len(samples) - len(kept),
    )
