"""The Lightning data module: train/val loaders over COCO-format splits."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from inverse_detr.data.batch import Batch, collate
from inverse_detr.data.coco import CocoDetection
from inverse_detr.data.shards import FixedShardSampler
from inverse_detr.data.splits import Split, data_splits
from inverse_detr.data.transforms import DetrTransform
from inverse_detr.detectors.build import build_transform


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
        augment: str = "none",
        fixed_shards: bool = False,
        seed: int = 0,
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
        self.augment = augment  # the training split's only
        # under DDP each rank reads the same shard every epoch (what a per-rank embedding cache
        # needs); the Trainer must then leave the samplers alone (use_distributed_sampler=False)
        self.fixed_shards = fixed_shards
        self.seed = seed
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
                augment=self.augment if split == "train" else "none",
            )
        return self.datasets[split]

    def first_batch(self, size: int) -> Batch:
        """The first `size` readable training images, collated as the DataLoader does."""
        dataset = self.dataset("train")
        samples = [s for s in (dataset[i] for i in range(min(len(dataset), 4 * size))) if s]
        return collate(samples[:size])

    def setup(self, stage: str | None = None) -> None:
        self.dataset("val")
        if stage in (None, "fit"):
            self.dataset("train")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = None
        if self.fixed_shards and world > 1:
            rank = self.trainer.global_rank
            sampler = FixedShardSampler(len(dataset), rank, world, shuffle, self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
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


def build_datamodule(
    data: DictConfig,
    model_name: str,
    with_masks: bool = False,
    fixed_shards: bool = False,
    seed: int = 0,
) -> DetectionDataModule:
    train, val = data_splits(data)
    return DetectionDataModule(
        train,
        val,
        build_transform(data, model_name),
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        pin_memory=data.pin_memory,
        on_bad_image=data.on_bad_image,
        max_train_images=data.max_train_images,
        max_val_images=data.max_val_images,
        with_masks=with_masks,
        augment=data.augment,
        fixed_shards=fixed_shards,
        seed=seed,
    )
