"""Writing a shapes world: PNG images and one COCO file per split, and a cache that generates a
world on first use. Same arguments, same bytes, whatever the number of worker processes."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from inverse_detr.data.shapes.classes import MIN_CLASSES, SHAPE_CLASSES
from inverse_detr.data.shapes.render import SPLITS, RenderedObject, render_image
from inverse_detr.data.shapes.rules import Rules, categories, world_info

logger = logging.getLogger("inverse_detr.data.shapes")

WORLD_VERSION = 2  # 2: rules, per-object attributes and the area buckets recorded
MARKER_NAME = "world.json"
MIN_SIZE = 32


@dataclass(frozen=True)
class ShapesPaths:
    """Where a generated world lives: one image folder and one COCO file per split."""

    root: Path
    train_images: Path
    val_images: Path
    train_annotations: Path
    val_annotations: Path

    @classmethod
    def under(cls, root: Path) -> ShapesPaths:
        """The standard layout below ``root``."""
        ann = root / "annotations"
        files = (ann / "instances_train.json", ann / "instances_val.json")
        return cls(root, root / "train", root / "val", *files)

    def split(self, name: str) -> tuple[Path, Path]:
        """``(images_dir, annotation_file)`` of split ``name`` ("train" or "val")."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_annotations")


def _encode(obj: RenderedObject) -> dict:
    """COCO annotation (without ids) of one visible mask, RLE counts as str."""
    rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
    segmentation = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return {
        "category_id": obj.category_id,
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],  # [x, y, w, h] of the visible part
        "area": float(mask_utils.area(rle)),
        "iscrowd": 0,
        "segmentation": segmentation,
        # the truth this object was drawn with: its hue (degrees) and texture
        "attributes": {"hue": round(obj.hue, 2), "texture": obj.texture},
    }


def _render_and_save(job: tuple[Path, int, str, int, int, int, Rules]) -> list[dict]:
    """Worker: render one image, write its PNG, return its annotations (without ids)."""
    images_dir, seed, split, index, size, num_classes, rules = job
    rendered = render_image(seed, split, index, size, num_classes, rules)
    # Fixed PNG settings and no metadata: identical arguments give identical bytes.
    Image.fromarray(rendered.image).save(
        images_dir / f"{index:06d}.png", format="PNG", compress_level=6
    )
    return [_encode(obj) for obj in rendered.objects]


def _run_jobs(jobs: list, workers: int) -> list[list[dict]]:
    """Map ``_render_and_save`` over ``jobs`` in order, in a pool when it pays."""
    if workers <= 1 or len(jobs) <= 1:
        return [_render_and_save(job) for job in jobs]
    # forkserver: never fork a caller that may hold torch/Lightning threads.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    chunk = max(1, min(64, len(jobs) // (workers * 8)))
    with multiprocessing.get_context(method).Pool(workers) as pool:
        return list(pool.imap(_render_and_save, jobs, chunksize=chunk))


def _write_split(
    paths: ShapesPaths,
    split: str,
    n: int,
    size: int,
    seed: int,
    num_classes: int,
    workers: int,
    rules: Rules,
) -> int:
    """Render and write one split; returns its number of annotations."""
    images_dir, ann_file = paths.split(split)
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(images_dir, seed, split, i, size, num_classes, rules) for i in range(n)]
    images, annotations = [], []
    for index, anns in enumerate(_run_jobs(jobs, workers)):
        images.append(
            {"id": index + 1, "file_name": f"{index:06d}.png", "width": size, "height": size}
        )
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, **ann})
    coco = {
        "info": {
            "description": "inverse_detr shapes world",
            "split": split,
            "seed": seed,
            **world_info(rules, size),
        },
        "images": images,
        "annotations": annotations,
        "categories": categories(num_classes, rules),
    }
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(coco, separators=(",", ":")) + "\n", encoding="utf-8")
    return len(annotations)


def check_arguments(n_train: int, n_val: int, size: int, seed: int, num_classes: int) -> None:
    if n_train < 1 or n_val < 1:
        raise ValueError(f"need at least one image per split, got train={n_train} val={n_val}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if not MIN_CLASSES <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(
            f"num_classes must be in {MIN_CLASSES}..{len(SHAPE_CLASSES)}, got {num_classes}"
        )


def _world_parameters(
    n_train: int, n_val: int, size: int, seed: int, num_classes: int, rules: Rules
) -> dict:
    return dict(
        version=WORLD_VERSION,
        n_train=n_train,
        n_val=n_val,
        size=size,
        seed=seed,
        num_classes=num_classes,
        rules=rules.to_json(),
    )


def generate_shapes(
    out: Path,
    n_train: int,
    n_val: int,
    size: int = 128,
    seed: int = 0,
    num_classes: int = 6,
    workers: int | None = None,
    rules: Rules = Rules(),
) -> ShapesPaths:
    """Write a shapes world below ``out`` (``train/``, ``val/``, ``annotations/``) and, last,
    the marker ``world.json`` holding the parameters. Output bytes do not depend on ``workers``
    (``None`` → ``os.cpu_count()``)."""
    check_arguments(n_train, n_val, size, seed, num_classes)
    paths = ShapesPaths.under(Path(out))
    marker = paths.root / MARKER_NAME
    paths.root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    workers = workers if workers is not None else (os.cpu_count() or 1)
    params = _world_parameters(n_train, n_val, size, seed, num_classes, rules)
    for split, n in zip(SPLITS, (n_train, n_val), strict=True):
        params[f"{split}_objects"] = _write_split(
            paths, split, n, size, seed, num_classes, workers, rules
        )
    marker.write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
    return paths


def _is_complete(root: Path, expected: dict) -> bool:
    try:
        found = json.loads((root / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return all(found.get(k) == v for k, v in expected.items())


def ensure_shapes_world(
    cache_dir: Path,
    n_train: int,
    n_val: int,
    size: int = 128,
    seed: int = 0,
    num_classes: int = 6,
    rules: Rules = Rules(),
) -> ShapesPaths:
    """Return the world in ``cache_dir``, generating it on first use. Generation happens in a
    temporary sibling that is renamed into place, so a killed run never leaves a half world that
    looks complete; a folder without a matching marker is regenerated."""
    check_arguments(n_train, n_val, size, seed, num_classes)
    cache_dir = Path(cache_dir)
    name = f"shapes-{size}px-{n_train}-{n_val}-k{num_classes}-seed{seed}{rules.tag()}"
    target = cache_dir / name
    expected = _world_parameters(n_train, n_val, size, seed, num_classes, rules)
    if _is_complete(target, expected):
        logger.info("reusing shapes world at %s", target)
        return ShapesPaths.under(target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache_dir))
    logger.info("generating shapes world into %s (%d + %d images)", target, n_train, n_val)
    try:
        generate_shapes(tmp, n_train, n_val, size, seed, num_classes, rules=rules)
        if not _is_complete(target, expected):  # else another process finished it meanwhile
            if target.exists():
                logger.warning("removing incomplete shapes world at %s", target)
                shutil.rmtree(target)
            os.replace(tmp, target)
    except OSError:
        # Another process may have finished the same world first; theirs is as good as ours.
        if not _is_complete(target, expected):
            raise
        logger.info("shapes world at %s was completed concurrently; using it", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ShapesPaths.under(target)
