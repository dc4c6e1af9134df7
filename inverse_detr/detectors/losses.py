"""Each detector's own training losses, per image, in eval mode.

Layout inversion (its I-step) and the conformance tests need a detector's loss against given
targets without training mode: `.train()` would switch BatchNorm to batch statistics and the
RPN to its training top-n, and torchvision averages its losses over the batch. So the pieces are
called directly, one image at a time; the two-stage detectors' random fg/bg sampling draws from
a fixed seed, so an image's losses never depend on the rest of its batch or on the call.

targets: per image {"boxes": (N, 4) xyxy canvas pixels, "labels": (N,) category ids,
"masks": (N, H, W) (Mask R-CNN)}. Every function returns {loss name: (B,) per image}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import fastrcnn_loss, maskrcnn_loss
from torchvision.models.detection.rpn import concat_box_prediction_layers

SAMPLING_SEED = 0  # the R-CNNs' fg/bg sampling, fixed per image


def classic_losses(model: nn.Module, images: torch.Tensor, targets: list[dict]) -> dict:
    """A torchvision detector's losses per image; images: (B, 3, H, W) in [0, 1]."""
    model.eval()
    if not len(images):
        raise ValueError("losses of an empty batch")
    rows = [
        _one(model, image[None], [target]) for image, target in zip(images, targets, strict=True)
    ]
    return {name: torch.stack([row[name] for row in rows]) for name in rows[0]}


def _one(model: nn.Module, image: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
    image_list, targets = model.transform(list(image), [dict(t) for t in targets])
    features = model.backbone(image_list.tensors)
    if isinstance(model, GeneralizedRCNN):
        devices = [image.device] if image.is_cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(SAMPLING_SEED)
            return _rcnn(model, image_list, features, targets)
    levels = list(features.values())
    head_outputs = model.head(levels)
    anchors = model.anchor_generator(image_list, levels)
    if isinstance(model, FCOS):
        per_level = [x.size(2) * x.size(3) for x in levels]
        return model.compute_loss(targets, head_outputs, anchors, per_level)
    return model.compute_loss(targets, head_outputs, anchors)


@dataclass
class RcnnTargets:
    """The R-CNNs' Z-step for one image, by their own training pieces.

    anchors (A, 4), rpn_labels (A,) 1 object / 0 background / −1 ignored, rpn_regression (A, 4)
    the deltas to each anchor's object; rois (R, 4) the sampled RoIs (eval-mode proposals plus
    the layout boxes), roi_labels (R,) category or 0 background, roi_regression (R, 4), and
    roi_objects (R,) the layout object each RoI is matched to (for the masks).
    """

    anchors: torch.Tensor
    rpn_labels: torch.Tensor
    rpn_regression: torch.Tensor
    rois: torch.Tensor
    roi_labels: torch.Tensor
    roi_regression: torch.Tensor
    roi_objects: torch.Tensor


def rcnn_targets(model, image_list, features, objectness, deltas, targets) -> RcnnTargets:
    """The whole Z-step of one image (`rpn_targets`, then `roi_targets`). objectness (A, 1),
    deltas (A, 4): the RPN's flattened outputs for it."""
    anchors, labels, regression = rpn_targets(model, image_list, features, targets)
    roi = roi_targets(model, image_list, features, objectness, deltas, anchors, targets)
    return RcnnTargets(anchors, labels, regression, *roi)


def rpn_targets(model, image_list, features, targets) -> tuple[torch.Tensor, ...]:
    """The RPN's own anchor labelling against the layout: anchors (A, 4), labels (A,),
    regression (A, 4)."""
    rpn = model.rpn
    anchors = rpn.anchor_generator(image_list, list(features.values()))
    labels, matched_boxes = rpn.assign_targets_to_anchors(anchors, targets)
    return anchors[0], labels[0], rpn.box_coder.encode(matched_boxes, anchors)[0]


def roi_targets(
    model, image_list, features, objectness, deltas, anchors, targets
) -> tuple[torch.Tensor, ...]:
    """The RoI head's: the proposals surviving its eval-mode filtering plus the layout boxes,
    sampled and labelled as in training (a proposal matching no object is background):
    rois (R, 4), labels (R,), regression (R, 4), matched object (R,)."""
    rpn, heads = model.rpn, model.roi_heads
    per_location = rpn.anchor_generator.num_anchors_per_location()[0]
    per_level = [f.shape[-2] * f.shape[-1] * per_location for f in features.values()]
    proposals = rpn.box_coder.decode(deltas.detach(), [anchors]).view(1, -1, 4)
    boxes, _ = rpn.filter_proposals(
        proposals, objectness.detach(), image_list.image_sizes, per_level
    )
    if heads.has_mask() and "masks" not in targets[0]:  # torchvision's sampler insists on it
        targets = [dict(targets[0], masks=targets[0]["boxes"].new_zeros(0))]
    rois, matched, labels, regression = heads.select_training_samples(boxes, targets)
    return rois[0], labels[0], regression[0], matched[0]


def _rcnn(model, image_list, features, targets) -> dict[str, torch.Tensor]:
    """RPN losses on its own anchor labelling, then the RoI head's on sampled proposals plus the
    target boxes (and the mask head's on the positive ones), as in training (`rcnn_targets`)."""
    rpn, heads = model.rpn, model.roi_heads
    objectness, deltas = rpn.head(list(features.values()))
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    anchors, rpn_labels, rpn_regression = rpn_targets(model, image_list, features, targets)
    loss_objectness, loss_rpn_box = rpn.compute_loss(  # samples anchors: before the RoIs
        objectness, deltas, [rpn_labels], [rpn_regression]
    )
    roi = roi_targets(model, image_list, features, objectness, deltas, anchors, targets)
    z = RcnnTargets(anchors, rpn_labels, rpn_regression, *roi)
    pooled = heads.box_roi_pool(features, [z.rois], image_list.image_sizes)
    class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
    loss_classifier, loss_box = fastrcnn_loss(
        class_logits, box_regression, [z.roi_labels], [z.roi_regression]
    )
    out = {
        "loss_objectness": loss_objectness,
        "loss_rpn_box_reg": loss_rpn_box,
        "loss_classifier": loss_classifier,
        "loss_box_reg": loss_box,
    }
    if heads.has_mask() and "masks" in targets[0]:  # without target masks: the box terms only
        positive = torch.where(z.roi_labels > 0)[0]
        mask_boxes = [z.rois[positive]]
        pooled = heads.mask_roi_pool(features, mask_boxes, image_list.image_sizes)
        logits = heads.mask_predictor(heads.mask_head(pooled))
        gt_masks, gt_labels = [targets[0]["masks"]], [targets[0]["labels"]]
        out["loss_mask"] = maskrcnn_loss(
            logits, mask_boxes, gt_masks, gt_labels, [z.roi_objects[positive]]
        )
    return out
