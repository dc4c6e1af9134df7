"""`trainer.embedding_cache`: whether a run keeps the frozen DETR's targets, in which store,
under which key, and what the log says about it (the stores are inverse/cache.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import DetrForObjectDetection

from inverse_detr.config import ConfigError
from inverse_detr.data.batch import Batch
from inverse_detr.data.shards import FixedShardSampler
from inverse_detr.detectors.detr import forward_embeddings, token_positions
from inverse_detr.inverse.cache import (
    DiskStore,
    EmbeddingStore,
    RamStore,
    bytes_per_image,
    needed_fields,
    shapes_of,
    weights_hash,
)
from inverse_detr.inverse.embeddings import ForwardEmbeddings

log = logging.getLogger("inverse_detr.train")
# data keys that change how images are loaded, not what they are
LOADER_KEYS = ("batch_size", "num_workers", "pin_memory", "on_bad_image", "cache_dir")
SPLITS = ("train", "val")


def cache_wanted(cfg: DictConfig) -> tuple[bool, str]:
    """Whether this run caches (config checks already refused impossible explicit choices),
    and why, for the log."""
    mode, t = cfg.trainer.embedding_cache, cfg.trainer
    if mode == "off" or cfg.mode != "inversion":
        return False, f"trainer.embedding_cache={mode}, mode={cfg.mode}"
    if mode in ("ram", "disk"):
        return True, f"trainer.embedding_cache={mode}"
    if cfg.data.augment != "none":
        return False, f"data.augment={cfg.data.augment} changes the images every epoch"
    if t.max_epochs == 1 or t.fast_dev_run:
        return False, "the run sees each image once"
    return True, "a frozen DETR on a deterministic pipeline, more than one epoch"


def data_key(data: DictConfig) -> str:
    """sha256 of the data config, less the keys that only change how images are loaded."""
    values = {k: v for k, v in OmegaConf.to_container(data).items() if k not in LOADER_KEYS}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


@dataclass
class SplitCache:
    """One split's store and what filling it cost this epoch."""

    store: EmbeddingStore
    fill_seconds: float = 0.0
    stored_before: int = 0


@dataclass
class EmbeddingCache:
    """The stores of one run (per split, per rank), opened by `InversionModule.setup`.

    mode: auto | ram | disk;  folder: a disk store's root (a split/rank folder under it)
    ram_bytes: auto picks RAM when both splits fit this;  dtype: storage dtype name
    """

    mode: str
    folder: Path
    ram_bytes: float
    dtype: str
    data_key: str
    image_size: tuple[int, int]  # (H, W) canvas of every batch
    grid: tuple[int, int] = (0, 0)  # (H', W') token grid, set by `open`
    splits: dict[str, SplitCache] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: DictConfig, run_dir: Path) -> EmbeddingCache:
        t = cfg.trainer
        folder = Path(t.embedding_cache_dir).expanduser() if t.embedding_cache_dir else None
        return cls(
            t.embedding_cache,
            folder or run_dir / "embedding_cache",
            t.embedding_cache_ram_gb * 1e9,
            t.embedding_cache_dtype,
            data_key(cfg.data),
            tuple(cfg.data.image_size),
        )

    def open(self, detr, stages: Sequence[str], ids: dict[str, list[int]], rank: int) -> None:
        """Build the stores for `ids` ({split: this rank's image ids}); one 1-image forward
        pass gives the fields' shapes."""
        fields = needed_fields(stages)
        probe = _probe(detr, self.image_size)
        shapes, self.grid = shapes_of(probe), probe.grid
        per_image = bytes_per_image(shapes, fields, self.dtype)
        total = per_image * sum(len(v) for v in ids.values())
        kind = self.mode if self.mode != "auto" else ("ram" if total <= self.ram_bytes else "disk")
        detr_key = weights_hash(detr)
        for split, split_ids in ids.items():
            key = {"detr": detr_key, "data": self.data_key, "split": split}
            key["ids"] = hashlib.sha256(json.dumps(split_ids).encode()).hexdigest()
            if kind == "ram":
                store = RamStore(fields, self.dtype, key)
            else:
                where = self.folder / (split if rank == 0 else f"{split}-rank{rank}")
                try:
                    store = DiskStore(where, split_ids, shapes, fields, self.dtype, key)
                except OSError as err:  # read-only, full, not a folder
                    raise ConfigError(
                        f"embedding cache folder {where}: {err.strerror or err} "
                        "(set trainer.embedding_cache_dir, or trainer.embedding_cache=ram|off)"
                    ) from None
                if store.invalidated:
                    log.info("embedding cache %s: emptied, changed: %s", where, store.invalidated)
            self.splits[split] = SplitCache(store, stored_before=len(store))
        where = f" under {self.folder}" if kind == "disk" else ""
        log.info(
            "embedding cache: %s%s (%s), fields %s, %.1f KB per image, %d images ≈ %.1f MB; "
            "later epochs skip the frozen DETR (trainer.embedding_cache=off to turn it off)",
            kind, where, self.dtype, ", ".join(fields), per_image / 1e3,
            sum(len(v) for v in ids.values()), total / 1e6,
        )  # fmt: skip

    def embed(self, detr, batch: Batch, split: str | None) -> ForwardEmbeddings:
        """The frozen forward pass's embeddings for `batch`: from the split's store when every
        image is there, else computed (and stored)."""
        cache = self.splits.get(split) if split else None
        if cache is None:
            return _forward(detr, batch)
        ids = [t.image_id for t in batch.targets]
        values = cache.store.lookup(ids)
        if values is not None:
            return _from_values(detr, values, batch, self.grid)
        start = time.perf_counter()
        emb = _forward(detr, batch)
        cache.store.store(ids, emb)
        cache.fill_seconds += time.perf_counter() - start
        return emb

    def end_epoch(self, split: str) -> None:
        """Flush the split's store; log what this epoch added."""
        cache = self.splits.get(split)
        if cache is None:
            return
        cache.store.flush()
        added = len(cache.store) - cache.stored_before
        if added:
            log.info(
                "embedding cache (%s): %d images stored in %.1f s of forward passes; %d in all, "
                "%.1f MB", split, added, cache.fill_seconds, len(cache.store),
                cache.store.nbytes() / 1e6,
            )  # fmt: skip
        cache.stored_before, cache.fill_seconds = len(cache.store), 0.0


def shard_ids(image_ids: list[int], rank: int, world: int) -> list[int]:
    """The image ids rank `rank` reads every epoch (`FixedShardSampler`'s shard)."""
    if world == 1:
        return list(image_ids)
    shard = FixedShardSampler(len(image_ids), rank, world, shuffle=False).shard()
    return list(dict.fromkeys(image_ids[i] for i in shard))


def _forward(detr: DetrForObjectDetection, batch: Batch) -> ForwardEmbeddings:
    with torch.no_grad():
        return forward_embeddings(detr, batch.pixel_values, batch.pixel_mask)


def _probe(detr: DetrForObjectDetection, size: tuple[int, int]) -> ForwardEmbeddings:
    """One blank (1, 3, H, W) image through the DETR: the fields' shapes at this canvas."""
    device = next(detr.parameters()).device
    pixels = torch.zeros(1, 3, *size, device=device)
    mask = torch.ones(1, *size, dtype=torch.long, device=device)
    with torch.no_grad():
        return forward_embeddings(detr, pixels, mask)


def _from_values(detr, values: dict[str, torch.Tensor], batch: Batch, grid) -> ForwardEmbeddings:
    """ForwardEmbeddings from stored fields; the token mask and positions are recomputed from
    the pixel mask; a field not stored is an empty tensor (no stage reads it)."""
    device = batch.pixel_values.device
    values = {k: v.to(device, non_blocking=True) for k, v in values.items()}
    empty = batch.pixel_values.new_empty(0)
    mask, spatial_pos = token_positions(detr, batch.pixel_mask, grid)
    backbone, encoder = values.get("backbone", empty), values.get("encoder", empty)
    return ForwardEmbeddings(
        backbone=backbone,
        grid=grid,
        spatial_pos=spatial_pos,
        mask=mask,
        encoder_layers=(backbone, encoder),
        decoder_layers=(empty, values.get("decoder", empty)),
        logits=values.get("logits", empty),
        boxes=values.get("boxes", empty),
        query_pos=detr.model.query_position_embeddings.weight,
        image_size=tuple(batch.pixel_values.shape[-2:]),
    )
