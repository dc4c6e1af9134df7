"""Colour metrics on inputs whose answers are known, and the colour analysis end to end."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from inverse_detr.analysis.color import (
    circular_distance,
    color_analysis,
    masked_hue,
    pairwise_mse,
    prototype_hues,
    selected_objects,
)
from inverse_detr.analysis.subset import AnalysisError
from inverse_detr.data.coco import CocoDetection
from inverse_detr.data.shapes import SHAPE_CLASSES, hsv_to_rgb
from inverse_detr.data.transforms import DetrTransform


def solid(hue: float, sat: float = 0.9, size: int = 6) -> torch.Tensor:
    rgb = torch.tensor(hsv_to_rgb(hue, sat, 0.8), dtype=torch.float32)
    return rgb.view(1, 3, 1, 1).expand(1, 3, size, size).clone()


def test_hue_distance_is_circular_and_symmetric():
    a = torch.tensor([350.0, 0.0, 725.0, 90.0])
    b = torch.tensor([10.0, 180.0, 0.0, 300.0])
    assert circular_distance(a, b).tolist() == pytest.approx([20.0, 180.0, 5.0, 150.0])
    assert torch.allclose(circular_distance(a, b), circular_distance(b, a))


def test_masked_hue_reads_the_mask_and_wraps_around():
    mask = torch.ones(1, 6, 6, dtype=torch.bool)
    hue, sat = masked_hue(solid(200.0), mask)
    assert hue.item() == pytest.approx(200.0, abs=0.5) and sat.item() == pytest.approx(0.9, 1e-3)
    # half the pixels at 350°, half at 10°: the circular mean is 0°, not the linear 180°
    image = torch.cat([solid(350.0)[..., :3], solid(10.0)[..., 3:]], dim=-1)
    assert circular_distance(masked_hue(image, mask)[0], 0.0).item() < 0.5
    # only the masked pixels count
    left = torch.zeros_like(mask)
    left[..., :3] = True
    assert masked_hue(image, left)[0].item() == pytest.approx(350.0, abs=0.5)
    # a gray object has no hue
    gray_hue, gray_sat = masked_hue(solid(0.0, sat=0.0), mask)
    assert math.isnan(gray_hue.item()) and gray_sat.item() == 0.0


def test_pairwise_mse_of_identical_reconstructions_is_zero():
    recon = torch.rand(1, 2, 3, 5, 5).expand(3, -1, -1, -1, -1)  # 3 filters, same images
    mask = torch.ones(2, 5, 5)
    assert torch.count_nonzero(pairwise_mse(recon, mask)) == 0


def test_pairwise_mse_counts_real_pixels_only():
    recons = torch.zeros(2, 1, 3, 4, 4)
    recons[1] = 0.5  # the second filter differs by 0.5 everywhere
    recons[1, :, :, :, 2:] = 9.0  # ... and wildly on the padding
    mask = torch.zeros(1, 4, 4)
    mask[..., :2] = 1
    expected = torch.tensor([[0.0, 0.25], [0.25, 0.0]], dtype=torch.float64)
    assert torch.allclose(pairwise_mse(recons, mask).double(), expected)


def test_selected_objects_by_area_and_category(val_images):
    target = next(t for t in val_images.targets if len(t.labels) >= 2)
    h, w = target.size
    areas = target.masks.flatten(1).sum(1).float() / (h * w)
    cut = float(areas.sort().values[-1])  # only the largest object reaches it
    assert selected_objects(target, None, cut) == [int(areas.argmax())]
    assert selected_objects(target, None, 0.0) == list(range(len(target.labels)))
    label = int(target.labels[0])
    chosen = selected_objects(target, [label], 0.0)
    assert chosen and all(int(target.labels[k]) == label for k in chosen)


def test_prototypes_come_from_category_metadata(tiny_world, tiny_inverter):
    train = CocoDetection(*tiny_world.split("train"), tiny_inverter.transform)
    expected = {i + 1: c.prototype_hue for i, c in enumerate(SHAPE_CLASSES[:6])}
    assert prototype_hues(train) == expected


def test_prototypes_without_metadata_are_the_mean_object_hue(tmp_path):
    """Real data: each category's objects' circular mean hue (here 350° and 20°, and 100°)."""
    (tmp_path / "images").mkdir()
    objects = {1: [350.0, 20.0], 2: [100.0, 100.0]}
    images, anns = [], []
    for i in range(2):
        canvas = np.zeros((16, 32, 3), np.uint8)
        mask = np.zeros((16, 32), bool)
        masks = []
        for k, (cid, hues) in enumerate(objects.items()):
            one = np.zeros_like(mask)
            one[2:14, 2 + 16 * k : 14 + 16 * k] = True
            canvas[one] = (np.asarray(hsv_to_rgb(hues[i], 0.9, 0.9)) * 255).round()
            masks.append((cid, one))
            mask |= one
        Image.fromarray(canvas).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 16})
        for cid, one in masks:
            rle = mask_utils.encode(np.asfortranarray(one.astype(np.uint8)))
            segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
            box = [2 + 16 * (cid - 1), 2, 12, 12]
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": cid, "bbox": box}
                | {"area": 144, "iscrowd": 0, "segmentation": segmentation}
            )
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    (tmp_path / "ann.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": categories})
    )
    train = CocoDetection(tmp_path / "images", tmp_path / "ann.json", DetrTransform((16, 32)))
    hues = prototype_hues(train)
    assert circular_distance(torch.tensor(hues[1]), 5.0).item() < 1.5
    assert circular_distance(torch.tensor(hues[2]), 100.0).item() < 1.5


def test_color_analysis_end_to_end(tiny_inverter, val_images):
    prototypes = {i + 1: c.prototype_hue for i, c in enumerate(SHAPE_CLASSES[:6])}
    result = color_analysis(
        tiny_inverter, val_images, prototypes, ["none", "red", "gray"], min_area=0.0,
        batch_size=3, progress=False,
    )  # fmt: skip
    assert result.stages == ["backbone", "encoder", "decoder", "head"]
    assert result.images + result.images_without_objects == len(val_images)
    labels = torch.cat([t.labels for t in val_images.targets])
    assert result.objects == len(labels)
    for matrix in result.pairwise.values():
        m = torch.tensor(matrix)
        assert torch.all(m.diagonal() == 0) and torch.allclose(m, m.T) and m.max() > 0
    # red objects have hue 0°: their distance to each prototype p is min(p, 360 − p)
    expected = sum(min(prototypes[int(c)], 360 - prototypes[int(c)]) for c in labels) / len(labels)
    assert result.hue_to_prototype["input"]["red"] == pytest.approx(expected, abs=1.0)
    assert result.saturation["input"]["gray"] == pytest.approx(0.0, abs=1e-5)
    assert result.hue_to_input["backbone"]["gray"] is None  # a gray input has no hue
    assert set(result.ap) == {"none", "red", "gray"}
    assert set(result.examples) == {"input", *result.stages}
    assert result.examples["input"].shape[0] == 3  # one row per filter
    json.dumps(result.to_dict())


def test_no_object_to_recolour_is_a_one_line_error(tiny_inverter, val_images):
    with pytest.raises(AnalysisError, match="covers ≥ 100%") as err:
        color_analysis(tiny_inverter, val_images, {}, min_area=1.0, progress=False)
    assert "\n" not in str(err.value)
