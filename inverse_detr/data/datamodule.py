"""Batches of DETR inputs: a collate that stacks images and keeps targets as lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from inverse_detr.data.coco import CocoDetection, Sample, Target
from inverse_detr.data.transforms import DetrTransform


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


@dataclass(frozen=True)
class Split:
    """Where one split lives: its image folder and COCO instances file."""

    images: Path
    annotations: Path


class DetectionDataModule(pl.LightningDataModule):
    """Train/val loaders over COCO-format splits, with workers and pinned memory."""

    def __init__(
        self,
        train: Split,
        val: Split,
        transform: DetrTransform,
        batch_size: int = 16,
        num_workers: int = 2,
        pin_memory: bool = True,
        on_bad_image: str = "skip",
        max_train_images: int = 0,
        max_val_images: int = 0,
        with_masks: bool = False,
    ) -> None:
        super().__init__()
        self.splits = {"train": train, "val": val}
        self.limits = {"train": max_train_images, "val": max_val_images}
        self.transform = transform
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.on_bad_image = on_bad_image
        self.with_masks = with_masks
        self.datasets: dict[str, CocoDetection] = {}

    def dataset(self, split: str) -> CocoDetection:
        """The split's dataset, built on first use."""
        if split not in self.datasets:
            where = self.splits[split]
            self.datasets[split] = CocoDetection(
                where.images,
                where.annotations,
                self.transform,
                on_bad_image=self.on_bad_image,
                max_images=self.limits[split],
                with_masks=self.with_masks,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        self.dataset("val")
        if stage in (None, "fit"):
            self.dataset("train")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
            drop_last=shuffle and len(self.dataset(split)) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int):
        return batch.to(device, non_blocking=True)
