"""Target layouts read from COCO files, with counted skips, and written back."""

import json

import pytest
import torch

from inverse_detr.data.coco import DataError
from inverse_detr.layout.targets import read_layouts, write_coco


def coco_file(tmp_path, annotations: list[dict], with_ids: bool = True):
    data = {
        "images": [
            {"id": 1, "width": 200, "height": 100, "file_name": "a.png"},
            {"id": 2, "width": 50, "height": 50, "file_name": "b.png"},
        ],
        "annotations": [{"id": k, **a} if with_ids else a for k, a in enumerate(annotations, 1)],
        "categories": [{"id": 1, "name": "circle"}, {"id": 9, "name": "kite"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def ann(image_id: int, category: int, bbox: list[float], crowd: int = 0) -> dict:
    return {"image_id": image_id, "category_id": category, "bbox": bbox, "iscrowd": crowd}


def test_layouts_are_normalised_and_skips_counted(tmp_path):
    path = coco_file(
        tmp_path,
        [
            ann(1, 1, [20, 10, 40, 50]),
            ann(1, 1, [180, 80, 40, 40]),  # sticks out: clipped to [180, 80, 200, 100]
            ann(1, 1, [0, 0, 0.5, 30]),  # degenerate
            ann(1, 1, [0, 0, 10, 10], crowd=1),
            ann(1, 9, [5, 5, 10, 10]),  # beyond the detector's classes
            ann(2, 9, [5, 5, 10, 10]),  # leaves image 2 empty
        ],
    )
    found = read_layouts(path, categories={1, 2, 3})
    assert len(found.layouts) == 1 and found.names == {1: "circle", 9: "kite"}
    (layout,) = found.layouts
    assert layout.labels.tolist() == [1, 1]
    assert torch.allclose(
        layout.boxes, torch.tensor([[0.2, 0.35, 0.2, 0.5], [0.95, 0.9, 0.1, 0.2]])
    )
    assert found.skipped == {
        "degenerate boxes": 1,
        "crowd regions": 1,
        "categories the detector lacks": 2,
        "images without objects": 1,
    }
    assert "1 layouts (2 objects)" in found.summary()


def test_unusable_files_are_one_line_errors(tmp_path):
    path = coco_file(tmp_path, [ann(1, 9, [5, 5, 10, 10])])
    with pytest.raises(DataError, match="no usable layout"):
        read_layouts(path, categories={1, 2, 3})
    path = coco_file(tmp_path, [ann(1, 1, [0, 0, 5, 5])], with_ids=False)
    with pytest.raises(DataError, match=r"malformed COCO entry \(KeyError: 'id'\)"):
        read_layouts(path)
    for bbox in ([0, 0, 5], "0 0 5 5", None):
        path = coco_file(tmp_path, [ann(1, 1, bbox)])
        with pytest.raises(DataError, match=r"instances.json: image 1: malformed entry"):
            read_layouts(path)


def test_real_coco_layouts_round_trip_through_a_canvas_file(coco128, tmp_path):
    found = read_layouts(coco128 / "annotations" / "instances_train2017.json", n=10, max_objects=5)
    assert len(found.layouts) == 10 and max(map(len, found.layouts)) <= 5
    assert found.skipped["objects beyond the detections per image"] > 0
    path = write_coco(found.layouts, found.names, (480, 640), tmp_path / "targets.json")
    again = read_layouts(path)
    for before, after in zip(found.layouts, again.layouts, strict=True):
        assert torch.equal(before.labels, after.labels)
        assert torch.allclose(before.boxes, after.boxes, atol=1e-3)
