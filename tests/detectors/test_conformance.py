"""Every detector kind behind the one interface: tiny random instances, seconds each."""

from __future__ import annotations

import pytest
import torch

from inverse_detr.detectors.classic import FAMILIES, ClassicDetector, ClassicSpec, build_classic
from inverse_detr.detectors.detr import load_detr
from inverse_detr.detectors.detr_detector import DetrDetector
from inverse_detr.detectors.interface import Detector
from inverse_detr.detectors.loading import DetectorLoadError, load_detector, save_detector

SIZE = 64
CATEGORIES = {1: "circle", 2: "square", 3: "triangle"}
KINDS = ("detr", *FAMILIES)


def tiny(kind: str, detr_dir) -> Detector:
    torch.manual_seed(0)
    if kind == "detr":
        detr = load_detr(detr_dir)
        return DetrDetector(detr, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), CATEGORIES)
    spec = ClassicSpec(kind, CATEGORIES, image_size=SIZE)
    model = build_classic(spec).eval()
    # an untrained detector scores below the default thresholds: keep every candidate, so
    # that the format tests see real detections
    heads = model.roi_heads if hasattr(model, "roi_heads") else model
    heads.score_thresh = 0.0
    return ClassicDetector(model, spec)


def images(seed: int = 0, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=KINDS)
def detector(request, tiny_detr_dir) -> Detector:
    return tiny(request.param, tiny_detr_dir)


def test_predictions_have_the_interfaces_format(detector):
    assert isinstance(detector, Detector)
    found = detector.predict(images())
    assert len(found) == 2 and all(len(p.scores) for p in found)
    # the tiny DETR has 5 queries; the classic detectors keep COCO's 100 detections per image
    assert detector.max_detections == (5 if detector.name == "detr" else 100)
    assert all(len(p.scores) <= detector.max_detections for p in found)
    for p in found:
        n = len(p.scores)
        assert p.boxes.shape == (n, 4) and p.boxes.dtype == torch.float32
        assert p.labels.shape == (n,) and p.labels.dtype == torch.long
        assert ((p.scores >= 0) & (p.scores <= 1)).all()
        if n:
            assert (p.boxes[:, 2:] >= p.boxes[:, :2]).all()
            assert p.boxes.min() >= -1 and p.boxes.max() <= SIZE + 1
        if detector.name == "mask_rcnn":
            assert p.masks is not None and p.masks.shape == (n, SIZE, SIZE)
            assert p.masks.dtype == torch.bool
        else:
            assert p.masks is None


def test_labels_are_the_datasets_category_ids(detector):
    assert detector.categories == CATEGORIES
    labels = torch.cat([p.labels for p in detector.predict(images(seed=1))])
    assert len(labels)
    # DETR also scores its unused ids (0, the tiny DETR's extra labels); the classic detectors
    # only ever predict a category (their sigmoid heads' id-0 scores are dropped)
    allowed = set(CATEGORIES) if detector.name != "detr" else set(range(92))
    assert set(labels.tolist()) <= allowed


def test_gradients_reach_the_pixels(detector):
    pixels = images(seed=2).requires_grad_(True)
    raw = detector.raw_outputs(pixels)
    differentiable = [v for v in raw.values() if v.requires_grad]
    assert differentiable, sorted(raw)
    torch.stack([v.float().sum() for v in differentiable]).sum().backward()
    assert pixels.grad is not None and pixels.grad.isfinite().all()
    assert pixels.grad.abs().sum() > 0


def test_inference_leaves_batchnorm_statistics_untouched(detector):
    before = {k: v.clone() for k, v in detector.module.state_dict().items() if "running" in k}
    assert before, "every kind has BatchNorm in its backbone"
    detector.module.train()  # even a module left in train mode: the interface switches to eval
    detector.predict(images(seed=3))
    detector.raw_outputs(images(seed=4))
    after = detector.module.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_raw_outputs_of_one_image_do_not_depend_on_the_batch(detector):
    batch = images(seed=5, batch=3)
    alone = detector.raw_outputs(batch[1:2])
    together = detector.raw_outputs(batch)
    key = "logits" if detector.name == "detr" else next(iter(alone))
    if detector.name in ("faster_rcnn", "mask_rcnn"):
        key = "rpn_objectness"
    torch.testing.assert_close(alone[key][0], together[key][1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_detectors_load_back_and_predict_alike(family, tmp_path):
    detector = tiny(family, None)
    folder = save_detector(detector, tmp_path / family, fp16=False)
    loaded = load_detector(folder)
    assert loaded.name == family and loaded.categories == CATEGORIES
    x = images(seed=6)
    torch.testing.assert_close(loaded.raw_outputs(x), detector.raw_outputs(x))


def test_fp16_storage_loads_as_float32(tmp_path):
    detector = tiny("retinanet", None)
    folder = save_detector(detector, tmp_path / "half")
    loaded = load_detector(folder)
    assert {p.dtype for p in loaded.module.parameters()} == {torch.float32}
    x = images(seed=7)
    a, b = loaded.raw_outputs(x)["cls_logits"], detector.raw_outputs(x)["cls_logits"]
    torch.testing.assert_close(a, b, atol=5e-2, rtol=0)


def test_an_hf_detr_directory_loads_as_detr(tiny_detr_dir):
    assert load_detector(tiny_detr_dir).name == "detr"


def test_building_downloads_nothing(monkeypatch):
    """No builder may reach for pretrained weights (they would be a download here)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    for family in FAMILIES:
        build_classic(ClassicSpec(family, CATEGORIES, image_size=SIZE))


BAD = {
    "missing weights": (lambda d: (d / "model.safetensors").unlink(), "missing"),
    "corrupt weights": (
        lambda d: (d / "model.safetensors").write_bytes(b"not safetensors"),
        "unreadable safetensors",
    ),
    "another architecture": (
        lambda d: (d / "detector.json").write_text(
            (d / "detector.json").read_text().replace('"fpn_channels": 64', '"fpn_channels": 32')
        ),
        "does not fit the retinanet",
    ),
    "unknown family": (
        lambda d: (d / "detector.json").write_text(
            (d / "detector.json").read_text().replace('"retinanet"', '"yolo"')
        ),
        "unknown detector family 'yolo'",
    ),
    "not json": (lambda d: (d / "detector.json").write_text("{"), "unreadable"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_detector_directories_are_one_line_errors(case, tmp_path):
    folder = save_detector(tiny("retinanet", None), tmp_path / "d")
    damage, message = BAD[case]
    damage(folder)
    with pytest.raises(DetectorLoadError, match=message) as err:
        load_detector(folder)
    assert "\n" not in str(err.value) and str(folder) in str(err.value)


def test_unknown_directories_name_the_known_kinds(tmp_path):
    with pytest.raises(DetectorLoadError, match="detector.json.*retinanet.*config.json"):
        load_detector(tmp_path)
    with pytest.raises(DetectorLoadError, match="not found"):
        load_detector(tmp_path / "nothing" / "here")


def layout_targets(seed: int, batch: int) -> list[dict]:
    """Two boxes per image (xyxy pixels) with category ids and box-shaped masks."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        xy = torch.randint(0, SIZE // 2, (2, 2), generator=g).float()
        wh = torch.randint(8, SIZE // 2, (2, 2), generator=g).float()
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
        for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            masks[k, y0:y1, x0:x1] = 1
        out.append({"boxes": boxes, "labels": torch.tensor([1, 3]), "masks": masks})
    return out


def test_losses_are_per_image_and_independent_of_the_batch(detector):
    batch, targets = images(seed=8, batch=3), layout_targets(seed=1, batch=3)
    together = detector.losses(batch, targets)
    alone = detector.losses(batch[1:2], targets[1:2])
    assert together and set(together) == set(alone)
    for name, values in together.items():
        assert values.shape == (3,) and values.isfinite().all(), name
        torch.testing.assert_close(values[1], alone[name][0], atol=1e-5, rtol=1e-5)
    pixels = batch.clone().requires_grad_(True)
    total = torch.stack(list(detector.losses(pixels, targets).values())).sum()
    total.backward()
    assert pixels.grad.abs().sum() > 0  # the I-step can follow them to the pixels


def test_inversion_losses_are_per_image_terms_independent_of_the_batch(detector):
    batch, targets = images(seed=9, batch=3), layout_targets(seed=3, batch=3)
    together = detector.inversion_losses(batch, targets)
    expected = {"cls", "reg", "mask"} if detector.name == "mask_rcnn" else {"cls", "reg"}
    assert set(together) == expected
    alone = detector.inversion_losses(batch[2:3], targets[2:3])
    for name, values in together.items():
        assert values.shape == (3,) and values.isfinite().all() and (values > 0).all(), name
        torch.testing.assert_close(values[2], alone[name][0], atol=1e-5, rtol=1e-5)
    boxes_only = [{k: v for k, v in t.items() if k != "masks"} for t in targets[:1]]
    assert set(detector.inversion_losses(batch[:1], boxes_only)) == {"cls", "reg"}
    for name in expected:  # each term alone reaches the pixels (the disentangling study)
        pixels = batch[:1].clone().requires_grad_(True)
        detector.inversion_losses(pixels, targets[:1])[name].sum().backward()
        assert pixels.grad.abs().sum() > 0, name


def test_the_shipped_detr_gives_per_image_losses():
    """The shipped DETR was trained with auxiliary losses on; its per-image losses still work."""
    detector = load_detector("checkpoints/shapes-detr")
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    losses = detector.losses(x, layout_targets(seed=2, batch=2))
    assert set(losses) == {"loss_ce", "loss_bbox", "loss_giou"}
    assert all(v.shape == (2,) and v.isfinite().all() for v in losses.values())


def test_detr_boxes_are_scaled_to_the_real_image_under_padding(tiny_detr_dir):
    detector = tiny("detr", tiny_detr_dir)
    x = images(seed=9)
    mask = torch.ones(2, SIZE, SIZE, dtype=torch.long)
    mask[:, :, SIZE // 2 :] = 0  # the right half is padding
    full, padded = detector.predict(x), detector.predict(x, mask)
    assert not torch.allclose(padded[0].boxes, full[0].boxes)
    assert padded[0].boxes[:, 0::2].max() <= SIZE / 2 + 1e-3


def test_fp16_storage_refuses_values_it_cannot_hold(tmp_path):
    from inverse_detr.detectors.detr import Fp16OverflowError, half_precision

    halves = half_precision({"w": torch.tensor([1.5, -2.0]), "n": torch.tensor(3)})
    assert halves["w"].dtype == torch.float16 and halves["n"].dtype == torch.int64
    detector = tiny("fcos", None)
    with torch.no_grad():
        next(detector.module.parameters()).view(-1)[0] = 1e6
    with pytest.raises(Fp16OverflowError, match=r"overflow fp16; store it fp32"):
        save_detector(detector, tmp_path / "big")
    save_detector(detector, tmp_path / "full", fp16=False)  # fp32 keeps it
