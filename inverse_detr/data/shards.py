"""A distributed sampler whose shards stay put: rank r reads the same images every epoch.

Lightning's default `DistributedSampler` reshuffles the whole dataset across ranks each epoch,
so a rank would see new images every epoch and a per-rank embedding cache would never fill.
Here rank r always gets indices r, r + W, r + 2W, … (padded by wrapping, as DistributedSampler
pads, so that every rank runs the same number of steps), shuffled within the shard per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class FixedShardSampler(Sampler[int]):
    """Indices of rank `rank`'s fixed shard of a dataset of `size` items among `world` ranks."""

    def __init__(self, size: int, rank: int, world: int, shuffle: bool, seed: int = 0) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.size, self.rank, self.world = size, rank, world
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.per_rank = math.ceil(size / world) if size else 0

    def shard(self) -> list[int]:
        """This rank's indices, padded to `per_rank` by wrapping around the dataset."""
        padded = [i % self.size for i in range(self.per_rank * self.world)] if self.size else []
        return padded[self.rank :: self.world]

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at every epoch start: the order within the shard changes."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        indices = self.shard()
        if self.shuffle:
            order = torch.randperm(
                len(indices), generator=torch.Generator().manual_seed(self.seed + self.epoch)
            )
            indices = [indices[i] for i in order.tolist()]
        return iter(indices)

    def __len__(self) -> int:
        return self.per_rank
