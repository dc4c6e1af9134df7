"""Masked texture removal for `python -m inverse_detr.invert_layout layout.texture=true`:
every detector (`model` and `layout.detectors`) reads the first `layout.n` val images before and
after each object's texture is flattened to its mean colour (`analysis.texture`). Writes
texture.json (per detector, size bucket, textured / flat: objects, score and IoU before / after)
and texture.png (the score change per bucket).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from inverse_detr.analysis.evaluation import buckets_of
from inverse_detr.analysis.plots import grouped_bars
from inverse_detr.analysis.texture import summarise, texture_removal
from inverse_detr.config import ConfigError
from inverse_detr.data.coco import read_coco
from inverse_detr.data.splits import data_splits
from inverse_detr.detectors.interface import Detector


def texture_study(cfg: DictConfig, detectors: dict[str, Detector], out: Path) -> Path:
    """Run texture removal with every detector; returns the output folder."""
    if cfg.layout.layouts != "val":
        raise ConfigError(
            "layout.texture=true reads the val split of `data`: leave layout.layouts=val"
        )
    split = data_splits(cfg.data)[1]
    buckets = buckets_of(read_coco(split.annotations).dataset.get("info", {}))
    n = cfg.layout.n or 10**9
    record, bars = {}, {}
    for name, detector in detectors.items():
        changes = texture_removal(
            detector, split.images, split.annotations, n, buckets, cfg.layout.batch_size
        )
        record[name] = summarise(changes)
        for bucket, kinds in record[name].items():
            bars[f"{name}\n{bucket}"] = {k: v["score_change"] for k, v in kinds.items()}
            for kind, row in kinds.items():
                print(
                    f"{name} {bucket:<6} {kind:<8} {row['objects']:>4} objects: score "
                    f"{row['score_before']:.3f} → {row['score_after']:.3f}, IoU "
                    f"{row['iou_before']:.3f} → {row['iou_after']:.3f}",
                    flush=True,
                )
    out.mkdir(parents=True, exist_ok=True)
    (out / "texture.json").write_text(json.dumps(record, indent=2))
    title = "score change when each object's texture is flattened to its mean colour"
    grouped_bars(bars, "score after − before", title).savefig(out / "texture.png", dpi=150)
    print(f"written to {out}", flush=True)
    return out
