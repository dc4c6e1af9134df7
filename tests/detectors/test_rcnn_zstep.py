"""The two-stage detectors' Z-step: the RPN's own anchor labelling, and RoI targets on the
surviving proposals plus the layout boxes — every layout object assigned, proposals that match
no object pushed to background."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import box_iou

from inverse_detr.detectors.classic import ClassicDetector, ClassicSpec, build_classic
from inverse_detr.detectors.losses import rcnn_targets

SIZE = 128
CATEGORIES = {1: "circle", 2: "square", 3: "triangle"}
BOXES = torch.tensor(
    [[10.0, 12.0, 40.0, 50.0], [60.0, 60.0, 120.0, 110.0], [70.0, 5.0, 85.0, 20.0]]
)
LABELS = torch.tensor([3, 1, 2])


def zstep(family: str, seed: int):
    torch.manual_seed(0)
    spec = ClassicSpec(family, CATEGORIES, image_size=SIZE)
    model = ClassicDetector(build_classic(spec).eval(), spec).module
    image = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    image_list, targets = model.transform([image], [{"boxes": BOXES, "labels": LABELS}])
    features = model.backbone(image_list.tensors)
    objectness, deltas = model.rpn.head(list(features.values()))
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    return rcnn_targets(model, image_list, features, objectness, deltas, targets)


@pytest.mark.parametrize("family", ["faster_rcnn", "mask_rcnn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_layout_object_is_assigned_anchors_and_a_roi_of_its_class(family, seed):
    z = zstep(family, seed)
    iou = box_iou(BOXES, z.anchors)  # (N, A)
    for j in range(len(BOXES)):
        best = iou[j] == iou[j].max()
        assert (z.rpn_labels[best] == 1).any(), f"object {j} has no positive anchor"
    for j, label in enumerate(LABELS.tolist()):
        mine = (z.roi_objects == j) & (z.roi_labels > 0)
        assert mine.any(), f"object {j} has no RoI"
        assert (z.roi_labels[mine] == label).all()
        assert (box_iou(z.rois[mine], BOXES[j : j + 1])[:, 0] >= 0.5).all()


@pytest.mark.parametrize("family", ["faster_rcnn", "mask_rcnn"])
def test_proposals_matching_no_object_are_pushed_to_background(family):
    z = zstep(family, 0)
    best = box_iou(z.rois, BOXES).max(dim=1).values  # (R,)
    background = z.roi_labels == 0
    assert background.any() and (best[background] < 0.5).all()
    assert (z.roi_labels[best >= 0.5] > 0).all()  # and nothing that matches is
    assert ((z.rpn_labels == 0) | (z.rpn_labels == 1) | (z.rpn_labels == -1)).all()
