"""The COCO dataset path: real coco128 images, hand-made files for every kind of bad input."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from inverse_detr.analysis.metrics import ap_metric, detection_targets
from inverse_detr.data.batch import collate
from inverse_detr.data.coco import CocoDetection, DataError
from inverse_detr.data.splits import Split
from inverse_detr.data.transforms import DetrTransform
from inverse_detr.lit.datamodule import DetectionDataModule


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def write_coco(root: Path, images: dict[str, Image.Image | bytes | None], extra_anns=()) -> Path:
    """A COCO folder with one 10×20 box (and its mask) per image; bytes are written raw."""
    (root / "images").mkdir(parents=True)
    infos, anns = [], []
    for i, (name, image) in enumerate(images.items(), start=1):
        if isinstance(image, Image.Image):
            image.save(root / "images" / name)
            w, h = image.size
        elif isinstance(image, bytes):
            (root / "images" / name).write_bytes(image)
            w, h = 64, 48
        else:  # listed in the JSON, absent on disk
            w, h = 64, 48
        infos.append({"id": i, "file_name": name, "width": w, "height": h})
        mask = np.zeros((h, w), bool)
        mask[4:14, 2:22] = True
        anns.append(
            {
                "id": i,
                "image_id": i,
                "category_id": 1,
                "bbox": [2, 4, 20, 10],
                "area": 200,
                "iscrowd": 0,
                "segmentation": _rle(mask),
            }
        )
    for k, ann in enumerate(extra_anns, start=len(anns) + 1):
        anns.append({"id": k, "iscrowd": 0, "area": 1, "segmentation": [], **ann})
    data = {
        "images": infos,
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing"}, {"id": 3, "name": "other"}],
    }
    (root / "ann.json").write_text(json.dumps(data))
    return root


def rgb(w=64, h=48, mode="RGB", color=(200, 30, 30)):
    return Image.new("RGB", (w, h), color).convert(mode)


def dataset(root: Path, **kwargs) -> CocoDetection:
    transform = DetrTransform((32, 64), kwargs.pop("mode", "fixed"))
    return CocoDetection(root / "images", root / "ann.json", transform, **kwargs)


def test_fixed_resize_scales_boxes_and_masks(tmp_path):
    ds = dataset(write_coco(tmp_path, {"a.png": rgb()}))
    sample = ds[0]
    assert sample.pixel_values.shape == (3, 32, 64) and sample.pixel_mask.all()
    # box x 2..22 of 64, y 4..14 of 48 → normalised cxcywh
    expected = torch.tensor([[12 / 64, 9 / 48, 20 / 64, 10 / 48]])
    torch.testing.assert_close(sample.target.boxes, expected)
    assert sample.target.masks.shape == (1, 32, 64)
    ys, xs = torch.nonzero(sample.target.masks[0], as_tuple=True)
    assert xs.min() == 2 and xs.max() == 21 and ys.min() == 3 and ys.max() == 9


def test_pad_resize_keeps_aspect_and_masks_padding(tmp_path):
    ds = dataset(write_coco(tmp_path, {"a.png": rgb(w=64, h=64)}), mode="pad")
    sample = ds[0]
    assert sample.pixel_values.shape == (3, 32, 64)
    assert sample.pixel_mask[:, :32].all() and not sample.pixel_mask[:, 32:].any()
    assert (sample.pixel_values[:, :, 32:] == 0).all()
    # boxes are relative to the real image (DETR's frame), which covers the left half
    assert sample.target.size == (32, 32)
    torch.testing.assert_close(sample.target.boxes[0], torch.tensor([12, 9, 20, 10]) / 64)


def test_hflip_mirrors_the_real_image_with_its_boxes_and_masks(tmp_path):
    image = rgb(w=64, h=64)
    image.paste((0, 0, 255), (0, 0, 8, 64))  # a blue strip on the left edge
    sample = dataset(write_coco(tmp_path, {"a.png": image}), mode="pad")[0]
    flipped = sample.hflip()
    real = sample.pixel_values[:, :, :32]  # pad mode: the real image is the left half
    assert torch.equal(flipped.pixel_values[:, :, :32], real.flip(-1))
    assert torch.equal(flipped.pixel_values[:, :, 32:], sample.pixel_values[:, :, 32:])
    assert torch.equal(flipped.target.masks[..., :32], sample.target.masks[..., :32].flip(-1))
    cx = sample.target.boxes[0, 0]
    assert flipped.target.boxes[0, 0] == pytest.approx(1 - cx)
    assert torch.equal(flipped.hflip().pixel_values, sample.pixel_values)


def test_hflip_augmentation_flips_about_half_the_draws(tmp_path):
    ds = dataset(write_coco(tmp_path, {"a.png": rgb()}), augment="hflip")
    boxes = {round(float(ds[0].target.boxes[0, 0]), 4) for _ in range(40)}
    assert boxes == {round(12 / 64, 4), round(1 - 12 / 64, 4)}


def test_normalisation_uses_given_statistics(tmp_path):
    root = write_coco(tmp_path, {"a.png": rgb(color=(255, 0, 128))})
    ds = CocoDetection(
        root / "images",
        root / "ann.json",
        DetrTransform((16, 16), "fixed", mean=(0.5,) * 3, std=(0.5,) * 3),
    )
    values = ds[0].pixel_values[:, 8, 8]
    torch.testing.assert_close(values, torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]))


@pytest.mark.parametrize("mode", ["CMYK", "RGBA", "P", "L", "LA", "I;16", "1"])
def test_any_image_mode_becomes_rgb(tmp_path, mode):
    image = rgb().convert(mode) if mode != "I;16" else Image.new("I;16", (64, 48), 40000)
    name = "a.tiff" if mode == "CMYK" else "a.png"
    sample = dataset(write_coco(tmp_path, {name: image}))[0]
    assert sample.pixel_values.shape[0] == 3 and torch.isfinite(sample.pixel_values).all()
    if mode == "I;16":  # 16-bit values are rescaled to the 8-bit range
        assert sample.pixel_values.flatten(1).std(dim=1).max() < 1e-5


def _bad_files():
    png = Path(__file__)  # any non-image bytes
    good = rgb()
    return {
        "good.png": good,
        "zero.png": b"",
        "text.png": png.read_bytes()[:200],
        "missing.png": None,
    }


def test_bad_images_are_skipped_with_a_warning_and_counted(tmp_path, caplog):
    root = write_coco(tmp_path, _bad_files())
    jpeg = tmp_path / "truncated.jpg"
    rgb(256, 256).save(jpeg, quality=90)
    (root / "images" / "trunc.jpg").write_bytes(jpeg.read_bytes()[:300])
    data = json.loads((root / "ann.json").read_text())
    data["images"].append({"id": 99, "file_name": "trunc.jpg", "width": 256, "height": 256})
    (root / "ann.json").write_text(json.dumps(data))
    ds = dataset(root)
    with caplog.at_level(logging.WARNING):
        batch = collate([ds[i] for i in range(len(ds))])
    assert len(batch) == 1 and batch.skipped == 4
    for name in ("zero.png", "text.png", "missing.png", "trunc.jpg"):
        assert name in caplog.text


def test_bad_image_policy_error_names_the_file(tmp_path):
    ds = dataset(write_coco(tmp_path, {"zero.png": b""}), on_bad_image="error")
    with pytest.raises(DataError, match="zero.png"):
        ds[0]


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    root = write_coco(tmp_path, {"big.png": rgb(64, 48)})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the image has 3,072 pixels
    assert dataset(root)[0] is None


def test_bad_annotations_are_dropped_and_counted(tmp_path, caplog):
    extra = [
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 0.5, 10]},  # degenerate width
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, -3]},  # negative height
        {"image_id": 1, "category_id": 42, "bbox": [5, 5, 10, 10]},  # unknown category
    ]
    with caplog.at_level(logging.WARNING):
        ds = dataset(write_coco(tmp_path, {"a.png": rgb()}, extra))
    assert ds.stats.dropped == {"degenerate box": 2, "unknown category": 1}
    assert "2 degenerate box" in caplog.text and "1 unknown category" in caplog.text
    assert len(ds[0].target.labels) == 1


def test_missing_paths_and_broken_json_are_one_line_errors(tmp_path):
    root = write_coco(tmp_path, {"a.png": rgb()})
    transform = DetrTransform((32, 32))
    with pytest.raises(DataError, match="image folder not found: .*nope"):
        CocoDetection(root / "nope", root / "ann.json", transform)
    with pytest.raises(DataError, match="annotation file not found: .*none.json"):
        CocoDetection(root / "images", root / "none.json", transform)
    (root / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="broken.json: not valid JSON"):
        CocoDetection(root / "images", root / "broken.json", transform)
    (root / "list.json").write_text("[]")
    with pytest.raises(DataError, match="not a COCO instances file"):
        CocoDetection(root / "images", root / "list.json", transform)


def test_coco128_real_images_load_with_masks(coco128):
    ds = CocoDetection(
        coco128 / "train2017",
        coco128 / "annotations/instances_train2017.json",
        DetrTransform((240, 320), "pad"),
        max_images=6,
    )
    assert len(ds) == 6
    for i in range(len(ds)):
        sample = ds[i]
        n = len(sample.target.labels)
        assert sample.pixel_values.shape == (3, 240, 320)
        assert sample.target.boxes.shape == (n, 4) and sample.target.masks.shape == (n, 240, 320)
        assert ((sample.target.boxes >= 0) & (sample.target.boxes <= 1)).all()
        # every visible mask lies inside the real (unpadded) pixels
        assert not (sample.target.masks & (sample.pixel_mask == 0)).any()
        assert (sample.target.labels >= 1).all() and (sample.target.labels <= 90).all()


def test_datamodule_batches_coco128_with_workers(coco128):
    split = Split(coco128 / "train2017", coco128 / "annotations/instances_train2017.json")
    dm = DetectionDataModule(
        split,
        split,
        DetrTransform((96, 128)),
        batch_size=4,
        num_workers=2,
        max_train_images=8,
        max_val_images=8,
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    batch = batches[0]
    assert batch.pixel_values.shape == (4, 3, 96, 128) and batch.pixel_mask.shape == (4, 96, 128)
    assert len(batch.targets) == 4 and batch.skipped == 0
    assert batch.targets[0].masks.shape[0] == 0  # masks are off for training by default
    assert len(list(dm.val_dataloader())) == 2


def test_crowd_regions_are_ignored_by_ap_not_counted_as_false_positives(tmp_path):
    crowd = {"image_id": 1, "category_id": 1, "bbox": [30, 20, 30, 20], "iscrowd": 1}
    ds = dataset(write_coco(tmp_path, {"a.png": rgb()}, extra_anns=[crowd]))
    target = ds[0].target
    assert len(target.labels) == 1  # training sees the object only
    assert target.crowd_labels.tolist() == [1] and target.crowd_boxes.shape == (1, 4)
    truth = detection_targets([target])
    assert truth[0]["iscrowd"].tolist() == [0, 1]
    # a detection on the object and a more confident one on the crowd region
    boxes = truth[0]["boxes"].clone()
    prediction = {
        "boxes": boxes,
        "scores": torch.tensor([0.8, 0.9]),
        "labels": torch.tensor([1, 1]),
    }
    metric = ap_metric()
    metric.update([prediction], truth)
    assert float(metric.compute()["map_50"]) == pytest.approx(1.0)
