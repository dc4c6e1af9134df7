"""The shapes world: a generated COCO-format detection dataset where the truth is known.

K shape classes, each with a prototypical hue. Every image holds 1–4 filled shapes
on a smooth, textured, muted background; later shapes occlude earlier ones and each annotation
describes only the visible part. Everything derives from ``(seed, split, index)``, so the same
arguments give byte-identical files regardless of the number of worker processes.

CLI: ``python -m inverse_detr.data.shapes --out DIR --train N --val M --size 128 --seed S``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

logger = logging.getLogger("inverse_detr.data.shapes")

WORLD_VERSION = 1
MARKER_NAME = "world.json"
SPLITS = ("train", "val")
MIN_SIZE = 32
MIN_CLASSES = 5
MAX_OBJECTS = 4
SIZE_FRACTION = (0.15, 0.45)  # circumscribed diameter / image side, drawn log-uniformly
PROTOTYPE_PROBABILITY = 0.85
HUE_JITTER = 12.0  # degrees either side of the prototype
VIVID_RANGE = (0.55, 1.0)  # saturation and value of objects: vivid enough for hue to be measurable
MIN_VISIBLE_FRACTION = 0.25
MIN_VISIBLE_PIXELS_128 = 30  # at 128 px; scaled with image area


@dataclass(frozen=True)
class ShapeClass:
    """One category of the world: its shape name and prototypical hue in degrees."""

    name: str
    prototype_hue: float
    rotates: bool = True


# The first six are 60° apart, so K = 5 or 6 keeps prototypes far apart; the last two fill in at
# 30° offsets. Shapes stay distinguishable when ~20 px wide (a hexagon would pass for a circle).
SHAPE_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("circle", 0.0, rotates=False),
    ShapeClass("square", 60.0),
    ShapeClass("triangle", 120.0),
    ShapeClass("star", 180.0),
    ShapeClass("ring", 240.0, rotates=False),
    ShapeClass("cross", 300.0),
    ShapeClass("half_disc", 30.0),
    ShapeClass("bar", 210.0),
)


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


@dataclass(frozen=True)
class RenderedObject:
    """One annotated object. ``mask: (H, W) bool`` visible pixels; ``full_area``: unoccluded px."""

    category_id: int
    mask: np.ndarray
    full_area: int


@dataclass(frozen=True)
class RenderedImage:
    """``image: (H, W, 3) uint8`` RGB; ``objects`` in drawing order (last one on top)."""

    image: np.ndarray
    objects: list[RenderedObject]


def hsv_to_rgb(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Vectorised HSV → RGB. ``hue: (...)`` degrees, ``sat, val: (...)`` in [0, 1] →
    ``(..., 3)`` float RGB in [0, 1]."""
    hue, sat, val = (np.asarray(a, dtype=float)[..., None] for a in (hue, sat, val))
    # Closed form of the six-sector definition: channel n peaks where (n + hue/60) mod 6 is 3.
    k = np.mod(np.array([5.0, 3.0, 1.0]) + hue / 60.0, 6.0)
    return val - val * sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _regular_polygon(n: int, radius: float = 1.0, phase: float = np.pi / 2) -> np.ndarray:
    """``(n, 2)`` vertices on a circle of ``radius`` around the origin."""
    angles = phase + np.arange(n) * 2.0 * np.pi / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _unit_outlines() -> dict[str, list[tuple[np.ndarray, int]]]:
    """Per shape name, ``(vertices (N, 2), fill)`` polygons in the unit disc, drawn in order."""
    star = _regular_polygon(10)
    star[1::2] *= 0.45  # inner vertices of a five-pointed star
    arm = 0.3
    cross = np.array(
        [
            (arm, 1),
            (arm, arm),
            (1, arm),
            (1, -arm),
            (arm, -arm),
            (arm, -1),
            (-arm, -1),
            (-arm, -arm),
            (-1, -arm),
            (-1, arm),
            (-arm, arm),
            (-arm, 1),
        ],
        dtype=float,
    )
    arc = np.linspace(0.0, np.pi, 25)
    half_disc = np.stack([np.cos(arc), np.sin(arc) - 0.5], axis=1)  # centred on its extent
    return {
        "circle": [(_regular_polygon(48), 1)],
        "square": [(_regular_polygon(4, phase=np.pi / 4), 1)],
        "triangle": [(_regular_polygon(3), 1)],
        "star": [(star, 1)],
        "bar": [(np.array([(-1.0, -0.35), (1.0, -0.35), (1.0, 0.35), (-1.0, 0.35)]), 1)],
        "cross": [(cross, 1)],
        "ring": [(_regular_polygon(48), 1), (_regular_polygon(48, radius=0.55), 0)],
        "half_disc": [(half_disc, 1)],
    }


_OUTLINES = _unit_outlines()


def _place_shape(
    rng: np.random.Generator, shape: ShapeClass, size: int
) -> list[tuple[np.ndarray, int]]:
    """Random scale, rotation and position; the full extent stays inside the image.
    Returns ``(vertices (N, 2) pixel xy, fill)`` polygons."""
    low, high = np.log(SIZE_FRACTION[0]), np.log(SIZE_FRACTION[1])
    radius = 0.5 * size * np.exp(rng.uniform(low, high))
    angle = rng.uniform(0.0, 2.0 * np.pi) if shape.rotates else 0.0
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    polygons = [(radius * verts @ rotation.T, fill) for verts, fill in _OUTLINES[shape.name]]
    lo = polygons[0][0].min(axis=0)  # the first polygon is the outer outline
    hi = polygons[0][0].max(axis=0)
    offset = rng.uniform(-lo, (size - 1) - hi)  # (2,) xy shift keeping [lo, hi] in the image
    return [(verts + offset, fill) for verts, fill in polygons]


def _rasterize(polygons: list[tuple[np.ndarray, int]], size: int) -> np.ndarray:
    """Fill polygons in order into a ``(size, size) bool`` mask (PIL is far faster than
    point-in-polygon tests in numpy)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for verts, fill in polygons:
        draw.polygon([(float(x), float(y)) for x, y in verts], fill=fill)
    return np.asarray(canvas, dtype=bool)


def _object_colour(rng: np.random.Generator, shape: ShapeClass) -> np.ndarray:
    """``(3,)`` RGB in [0, 1]: mostly near the class prototype, sometimes any hue."""
    if rng.random() < PROTOTYPE_PROBABILITY:
        hue = shape.prototype_hue + rng.uniform(-HUE_JITTER, HUE_JITTER)
    else:
        hue = rng.uniform(0.0, 360.0)
    sat, val = rng.uniform(*VIVID_RANGE, size=2)
    return hsv_to_rgb(np.array(hue), np.array(sat), np.array(val))


def _upsample_bilinear(grid: np.ndarray, size: int) -> np.ndarray:
    """``grid: (h, w, C)`` → ``(size, size, C)``, bilinear with corners aligned."""

    def axis_weights(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.linspace(0.0, n - 1, size)
        i0 = np.minimum(np.floor(pos).astype(int), n - 2)
        return i0, i0 + 1, pos - i0

    r0, r1, fr = axis_weights(grid.shape[0])
    c0, c1, fc = axis_weights(grid.shape[1])
    rows = grid[r0] * (1 - fr)[:, None, None] + grid[r1] * fr[:, None, None]  # (size, w, C)
    return rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size, 3)`` float RGB: a low-frequency muted colour field, a mid-frequency
    luminance texture and fine pixel noise. Low saturation keeps vivid objects visible."""
    cells = rng.integers(2, 6, size=2)
    hue = rng.uniform(0.0, 360.0, size=(*cells, 1))
    sat = rng.uniform(0.0, 0.3, size=(*cells, 1))
    val = rng.uniform(0.3, 0.8, size=(*cells, 1))
    field = _upsample_bilinear(hsv_to_rgb(hue, sat, val)[..., 0, :], size)
    texture = _upsample_bilinear(rng.uniform(-0.05, 0.05, size=(size // 8, size // 8, 1)), size)
    return field + texture + rng.normal(0.0, 0.02, size=(size, size, 1))


def render_image(seed: int, split: str, index: int, size: int, num_classes: int) -> RenderedImage:
    """Render image ``index`` of ``split``; its RNG depends only on ``(seed, split, index)``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))
    canvas = _background(rng, size)
    classes = rng.integers(0, num_classes, size=rng.integers(1, MAX_OBJECTS + 1))
    full_masks = []
    for cls in classes:
        shape = SHAPE_CLASSES[cls]
        mask = _rasterize(_place_shape(rng, shape, size), size)
        canvas[mask] = _object_colour(rng, shape)
        full_masks.append(mask)
    canvas += rng.normal(0.0, 0.01, size=canvas.shape)  # sensor-like noise on everything
    image = np.round(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)
    return RenderedImage(image, _visible_objects(classes, full_masks, size))


def _visible_objects(
    classes: np.ndarray, full_masks: list[np.ndarray], size: int
) -> list[RenderedObject]:
    """Subtract what later objects cover; drop objects too hidden to be annotated fairly.
    The topmost object is never occluded, so at least one survives."""
    min_pixels = MIN_VISIBLE_PIXELS_128 * (size / 128.0) ** 2
    objects: list[RenderedObject] = []
    covered = np.zeros((size, size), dtype=bool)
    for cls, full in zip(classes[::-1], full_masks[::-1], strict=True):
        visible = full & ~covered
        covered |= full
        full_area, area = int(full.sum()), int(visible.sum())
        top = not objects
        if top or (area >= MIN_VISIBLE_FRACTION * full_area and area >= min_pixels):
            objects.append(RenderedObject(int(cls) + 1, visible, full_area))
    return objects[::-1]


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
    }


def _render_and_save(job: tuple[Path, int, str, int, int, int]) -> list[dict]:
    """Worker: render one image, write its PNG, return its annotations (without ids)."""
    images_dir, seed, split, index, size, num_classes = job
    rendered = render_image(seed, split, index, size, num_classes)
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


def _categories(num_classes: int) -> list[dict]:
    return [
        {"id": i + 1, "name": c.name, "supercategory": "shape", "prototype_hue": c.prototype_hue}
        for i, c in enumerate(SHAPE_CLASSES[:num_classes])
    ]


def _write_split(
    paths: ShapesPaths, split: str, n: int, size: int, seed: int, num_classes: int, workers: int
) -> int:
    """Render and write one split; returns its number of annotations."""
    images_dir, ann_file = paths.split(split)
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(images_dir, seed, split, i, size, num_classes) for i in range(n)]
    images, annotations = [], []
    for index, anns in enumerate(_run_jobs(jobs, workers)):
        images.append(
            {"id": index + 1, "file_name": f"{index:06d}.png", "width": size, "height": size}
        )
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, **ann})
    coco = {
        "info": {"description": "inverse_detr shapes world", "split": split, "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": _categories(num_classes),
    }
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(coco, separators=(",", ":")) + "\n", encoding="utf-8")
    return len(annotations)


def _check_arguments(n_train: int, n_val: int, size: int, seed: int, num_classes: int) -> None:
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


def _world_parameters(n_train: int, n_val: int, size: int, seed: int, num_classes: int) -> dict:
    return dict(
        version=WORLD_VERSION,
        n_train=n_train,
        n_val=n_val,
        size=size,
        seed=seed,
        num_classes=num_classes,
    )


def generate_shapes(
    out: Path,
    n_train: int,
    n_val: int,
    size: int = 128,
    seed: int = 0,
    num_classes: int = 6,
    workers: int | None = None,
) -> ShapesPaths:
    """Write a shapes world below ``out`` (``train/``, ``val/``, ``annotations/``) and, last,
    the marker ``world.json`` holding the parameters. Output bytes do not depend on ``workers``
    (``None`` → ``os.cpu_count()``)."""
    _check_arguments(n_train, n_val, size, seed, num_classes)
    paths = ShapesPaths.under(Path(out))
    marker = paths.root / MARKER_NAME
    paths.root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    workers = workers if workers is not None else (os.cpu_count() or 1)
    params = _world_parameters(n_train, n_val, size, seed, num_classes)
    for split, n in zip(SPLITS, (n_train, n_val), strict=True):
        params[f"{split}_objects"] = _write_split(paths, split, n, size, seed, num_classes, workers)
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
) -> ShapesPaths:
    """Return the world in ``cache_dir``, generating it on first use. Generation happens in a
    temporary sibling that is renamed into place, so a killed run never leaves a half world that
    looks complete; a folder without a matching marker is regenerated."""
    _check_arguments(n_train, n_val, size, seed, num_classes)
    cache_dir = Path(cache_dir)
    target = cache_dir / f"shapes-{size}px-{n_train}-{n_val}-k{num_classes}-seed{seed}"
    expected = _world_parameters(n_train, n_val, size, seed, num_classes)
    if _is_complete(target, expected):
        logger.info("reusing shapes world at %s", target)
        return ShapesPaths.under(target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache_dir))
    logger.info("generating shapes world into %s (%d + %d images)", target, n_train, n_val)
    try:
        generate_shapes(tmp, n_train, n_val, size, seed, num_classes)
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


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inverse_detr.data.shapes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--train", type=int, required=True, help="number of train images")
    parser.add_argument("--val", type=int, required=True, help="number of val images")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--classes", type=int, default=6, help=f"K, {MIN_CLASSES}..{len(SHAPE_CLASSES)}"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    try:
        _check_arguments(args.train, args.val, args.size, args.seed, args.classes)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> None:
    """CLI entry point; prints a one-line summary."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    paths = generate_shapes(
        args.out, args.train, args.val, args.size, args.seed, args.classes, args.workers
    )
    params = json.loads((paths.root / MARKER_NAME).read_text(encoding="utf-8"))
    objects = params["train_objects"] + params["val_objects"]
    print(
        f"shapes world: {args.train + args.val} images, {objects} objects, {args.classes} classes, "
        f"{args.size}px -> {paths.root} in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
