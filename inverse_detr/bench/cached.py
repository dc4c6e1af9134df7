"""Row (f) of the benchmark: the training step once the embedding cache holds the batch (an
epoch after the first), and what the cache costs: bytes per image, the time to fill it, and the
error of fp16/bf16 storage."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from inverse_detr.bench.timing import synchronize
from inverse_detr.data.batch import Batch
from inverse_detr.inverse.cache import DTYPES, bytes_per_image, field_of, shapes_of
from inverse_detr.lit.cache import EmbeddingCache


def bench_cache(batch: Batch) -> EmbeddingCache:
    """A RAM fp32 cache for a module that trains on `batch` (opened by `open_for`)."""
    return EmbeddingCache("ram", Path("."), 0.0, "float32", "bench", batch.pixel_values.shape[-2:])


def open_for(module, batch: Batch) -> None:
    """Open the module's cache for the batch's images (it fills on the first `embed`)."""
    ids = [t.image_id for t in batch.targets]
    module.cache.open(module.detr, module.stages, {"train": ids}, rank=0)


def fill(module, batch: Batch, device: torch.device) -> float:
    """Seconds to fill the cache with the batch: the frozen forward plus the copy into RAM."""
    synchronize(device)
    start = time.perf_counter()
    module.embed(batch, "train")
    synchronize(device)
    return time.perf_counter() - start


def storage_error(emb, fields: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per half dtype and field: the relative RMS error of storing the field in that dtype,
    ‖x − half(x)‖ / ‖x‖ over the batch."""
    errors = {}
    for name in ("float16", "bfloat16"):
        errors[name] = {}
        for f in fields:
            x = field_of(emb, f).float()
            stored = x.to(DTYPES[name]).float()
            errors[name][f] = float((x - stored).norm() / x.norm().clamp_min(1e-12))
    return errors


def cache_report(module, emb, batch: Batch, fill_seconds: float) -> dict:
    """The JSON the benchmark keeps for the cache of one variant."""
    fields = module.cache.splits["train"].store.fields
    shapes = shapes_of(emb)
    return {
        "fields": list(fields),
        "bytes_per_image": {d: bytes_per_image(shapes, fields, d) for d in DTYPES},
        "fill_seconds_per_batch": fill_seconds,
        "batch_size": len(batch),
        "storage_error": storage_error(emb, fields),
    }
