"""The shapes world: valid COCO files, known truth (hues, occlusion), determinism, caching, CLI."""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from inverse_detr.data import shapes
from inverse_detr.data.shapes import (
    SHAPE_CLASSES,
    ShapesPaths,
    ensure_shapes_world,
    generate_shapes,
    hsv_to_rgb,
    render_image,
)

SIZE = 64
SEED = 3
N_TRAIN, N_VAL = 16, 8


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> ShapesPaths:
    out = tmp_path_factory.mktemp("world")
    return generate_shapes(out, N_TRAIN, N_VAL, size=SIZE, seed=SEED, workers=1)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _circular_distance(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def _mean_hue(pixels: np.ndarray) -> float:
    """``pixels: (N, 3) uint8`` → circular mean hue in degrees."""
    hues = np.array([colorsys.rgb_to_hsv(*(p / 255.0))[0] for p in pixels]) * 2.0 * np.pi
    return float(np.degrees(np.arctan2(np.sin(hues).mean(), np.cos(hues).mean())) % 360.0)


def test_coco_files_load_and_masks_match_annotations(world: ShapesPaths) -> None:
    for split, n_images in (("train", N_TRAIN), ("val", N_VAL)):
        images_dir, ann_file = world.split(split)
        coco = COCO(str(ann_file))
        assert sorted(coco.getImgIds()) == list(range(1, n_images + 1))
        ann_ids = [a["id"] for a in coco.dataset["annotations"]]
        assert ann_ids == list(range(1, len(ann_ids) + 1))
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            with Image.open(images_dir / info["file_name"]) as image:
                assert image.size == (info["width"], info["height"]) == (SIZE, SIZE)
                assert image.mode == "RGB"
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= 4
            for ann in anns:
                mask = coco.annToMask(ann).astype(bool)
                assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
                assert mask.sum() == ann["area"] > 0
                ys, xs = np.nonzero(mask)
                x0, y0 = xs.min(), ys.min()
                expected = [x0, y0, xs.max() - x0 + 1, ys.max() - y0 + 1]
                assert ann["bbox"] == pytest.approx(expected)


def test_categories_carry_prototype_hue(world: ShapesPaths) -> None:
    categories = json.loads(world.train_annotations.read_text())["categories"]
    assert [c["id"] for c in categories] == [1, 2, 3, 4, 5, 6]
    for cat, spec in zip(categories, SHAPE_CLASSES[:6], strict=True):
        assert cat["name"] == spec.name and cat["supercategory"] == "shape"
        assert cat["prototype_hue"] == spec.prototype_hue
    hues = sorted(c["prototype_hue"] for c in categories)
    gaps = np.diff([*hues, hues[0] + 360.0])
    assert gaps.min() >= 45.0, "default prototypes should be spread over the hue circle"


def test_same_seed_is_byte_identical_across_worker_counts(world: ShapesPaths, tmp_path) -> None:
    again = generate_shapes(tmp_path / "again", N_TRAIN, N_VAL, size=SIZE, seed=SEED, workers=2)
    assert _hashes(again.root) == _hashes(world.root)


def test_other_seed_and_other_split_differ(world: ShapesPaths, tmp_path) -> None:
    other = generate_shapes(tmp_path / "other", 4, 2, size=SIZE, seed=SEED + 1, workers=1)
    theirs, ours = _hashes(other.root), _hashes(world.root)
    for name in ("train/000000.png", "train/000003.png", "val/000001.png"):
        assert theirs[name] != ours[name]
    assert ours["train/000000.png"] != ours["val/000000.png"]


def test_object_hues_are_mostly_near_their_prototype(world: ShapesPaths) -> None:
    images_dir, ann_file = world.split("train")
    coco = COCO(str(ann_file))
    prototypes = {c["id"]: c["prototype_hue"] for c in coco.dataset["categories"]}
    near = []
    for ann in coco.dataset["annotations"]:
        file_name = coco.loadImgs(ann["image_id"])[0]["file_name"]
        image = np.asarray(Image.open(images_dir / file_name).convert("RGB"))
        hue = _mean_hue(image[coco.annToMask(ann).astype(bool)])
        near.append(_circular_distance(hue, prototypes[ann["category_id"]]) <= 20.0)
    assert len(near) >= 20
    assert np.mean(near) >= 0.7


def test_bigger_world_has_occlusion_and_off_prototype_colours() -> None:
    occluded, off_prototype = 0, 0
    for index in range(60):
        rendered = render_image(SEED, "train", index, SIZE, 6)
        for obj in rendered.objects:
            area = int(obj.mask.sum())
            assert 0.25 * obj.full_area <= area <= obj.full_area
            occluded += area < obj.full_area
            hue = _mean_hue(rendered.image[obj.mask])
            prototype = SHAPE_CLASSES[obj.category_id - 1].prototype_hue
            off_prototype += _circular_distance(hue, prototype) > 20.0
    assert occluded >= 3
    assert off_prototype >= 3, "a minority of objects should be drawn in random hues"


def test_render_image_matches_written_files(world: ShapesPaths) -> None:
    images_dir, ann_file = world.split("val")
    coco = COCO(str(ann_file))
    for index in (0, N_VAL - 1):
        rendered = render_image(SEED, "val", index, SIZE, 6)
        np.testing.assert_array_equal(
            np.asarray(Image.open(images_dir / f"{index:06d}.png")), rendered.image
        )
        anns = coco.loadAnns(coco.getAnnIds(imgIds=index + 1))
        assert [a["category_id"] for a in anns] == [o.category_id for o in rendered.objects]
        for ann, obj in zip(anns, rendered.objects, strict=True):
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), obj.mask)


def test_background_is_muted_and_objects_vivid() -> None:
    background_sat, object_sat = [], []
    for index in range(10):
        rendered = render_image(SEED, "val", index, SIZE, 6)
        hsv = np.array(
            [colorsys.rgb_to_hsv(*p) for p in rendered.image.reshape(-1, 3) / 255.0]
        ).reshape(SIZE, SIZE, 3)
        covered = np.any([o.mask for o in rendered.objects], axis=0)
        background_sat.append(hsv[..., 1][~covered].mean())
        object_sat.append(hsv[..., 1][covered].mean())
    assert max(background_sat) < 0.4
    assert min(object_sat) > 0.45
    assert np.std(background_sat) > 0.0  # backgrounds differ per image


def test_shapes_keep_their_full_extent_inside_the_image() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        shape = SHAPE_CLASSES[rng.integers(len(SHAPE_CLASSES))]
        for verts, _fill in shapes.render._place_shape(rng, shape, SIZE):
            assert verts.min() >= 0.0 and verts.max() <= SIZE - 1


def test_hsv_to_rgb_matches_colorsys() -> None:
    rng = np.random.default_rng(1)
    hsv = rng.uniform(0.0, 1.0, size=(50, 3)) * [360.0, 1.0, 1.0]
    expected = [colorsys.hsv_to_rgb(h / 360.0, s, v) for h, s, v in hsv]
    np.testing.assert_allclose(hsv_to_rgb(hsv[:, 0], hsv[:, 1], hsv[:, 2]), expected, atol=1e-12)


def test_split_rejects_unknown_name(world: ShapesPaths) -> None:
    assert world.split("train") == (world.train_images, world.train_annotations)
    with pytest.raises(ValueError, match="unknown split"):
        world.split("test")


def test_ensure_reuses_a_complete_world(tmp_path, monkeypatch) -> None:
    first = ensure_shapes_world(tmp_path, 3, 2, size=SIZE, seed=SEED, num_classes=5)
    assert first.root.name == f"shapes-{SIZE}px-3-2-k5-seed{SEED}"
    assert (first.root / "world.json").is_file()
    before = _hashes(first.root)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete world must not be regenerated")

    monkeypatch.setattr(shapes.world, "generate_shapes", must_not_run)
    second = ensure_shapes_world(tmp_path, 3, 2, size=SIZE, seed=SEED, num_classes=5)
    assert second == first and _hashes(second.root) == before
    assert [p.name for p in tmp_path.iterdir()] == [first.root.name], "no temporary leftovers"


def test_ensure_regenerates_a_world_without_marker(tmp_path, monkeypatch) -> None:
    half = tmp_path / f"shapes-{SIZE}px-3-2-k5-seed{SEED}"
    (half / "train").mkdir(parents=True)
    (half / "train" / "000000.png").write_bytes(b"truncated")
    calls = []
    real = shapes.world.generate_shapes
    monkeypatch.setattr(
        shapes.world, "generate_shapes", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    paths = ensure_shapes_world(tmp_path, 3, 2, size=SIZE, seed=SEED, num_classes=5)
    assert len(calls) == 1 and paths.root == half
    assert (half / "world.json").is_file()
    assert len(COCO(str(paths.train_annotations)).getImgIds()) == 3
    with Image.open(half / "train" / "000000.png") as image:
        assert image.size == (SIZE, SIZE)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    repo_root = Path(shapes.__file__).resolve().parents[3]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "inverse_detr.data.shapes", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_cli_writes_a_world(tmp_path) -> None:
    out = tmp_path / "cli"
    result = _run_cli(
        "--out",
        str(out),
        "--train",
        "3",
        "--val",
        "2",
        "--size",
        "48",
        "--seed",
        "1",
        "--classes",
        "5",
        "--workers",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert "5 images" in result.stdout
    assert sorted(p.name for p in (out / "train").iterdir()) == [f"{i:06d}.png" for i in range(3)]
    val = COCO(str(out / "annotations" / "instances_val.json"))
    assert len(val.getImgIds()) == 2 and len(val.getCatIds()) == 5


def test_cli_rejects_too_few_classes(tmp_path) -> None:
    result = _run_cli(
        "--out", str(tmp_path / "bad"), "--train", "2", "--val", "1", "--classes", "2"
    )
    assert result.returncode != 0
    assert "num_classes" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bad").exists()


def test_cli_writes_a_planted_world_and_prints_its_statistics(tmp_path) -> None:
    out = tmp_path / "planted"
    args = ["--out", str(out), "--train", "20", "--val", "2", "--size", "64"]
    result = _run_cli(*args, "--workers", "1")  # every truth planted by default
    assert result.returncode == 0, result.stderr
    stats = _run_cli("--stats", str(out))
    assert stats.returncode == 0, stats.stderr
    assert "triangle → circle below: declared p 0.80" in stats.stdout
    assert "square     stripes" in stats.stdout and "sizes: small" in stats.stdout
    assert _run_cli("--stats", str(tmp_path / "nothing")).returncode == 2
