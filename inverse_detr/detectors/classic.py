"""The classic detectors beside DETR — RetinaNet, FCOS, Faster R-CNN, Mask R-CNN — from
torchvision's detection models, small enough for the shapes world and built offline.

Built with no pretrained weights at all (torchvision's `weights_backbone` default would download
ImageNet weights: we never go through those builders): a timm ResNet's feature stages (strides
4, 8, 16 by default) with trainable BatchNorm, a narrow torchvision `FeaturePyramidNetwork`, heads
sized for it, anchors sized for the world's 8–70 px objects, and `min_size = max_size =` the
canvas (torchvision would otherwise rescale a 128 px image to 800 px). Category ids are used as
torchvision's labels directly (id 0 is background for the R-CNNs and never a category).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from functools import partial

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead, concat_box_prediction_layers
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign

from inverse_detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from inverse_detr.detectors.dense_zstep import decode, dense_inversion_losses
from inverse_detr.detectors.interface import Candidates, Prediction, softmax_log_odds
from inverse_detr.detectors.losses import classic_losses

FAMILIES = ("retinanet", "fcos", "faster_rcnn", "mask_rcnn")
# anchor sizes per FPN level, in canvas pixels: sized for 8–70 px objects on a 128 px canvas
DEFAULT_ANCHORS = {
    "retinanet": ((12, 15, 19), (24, 30, 38), (48, 60, 76)),
    "fcos": ((4,), (8,), (16,)),  # FCOS assigns a level by 4–8× its size: [0,32) [32,64) 64+
    "faster_rcnn": ((12, 15, 19), (24, 30, 38), (48, 60, 76)),
    "mask_rcnn": ((12, 15, 19), (24, 30, 38), (48, 60, 76)),
}


@dataclass(frozen=True)
class ClassicSpec:
    """Everything that builds one detector (stored as `detector.json` beside its weights)."""

    family: str
    categories: dict[int, str]
    image_size: int = 128
    backbone: str = "resnet10t"
    out_indices: tuple[int, ...] = (1, 2, 3)
    fpn_channels: int = 64
    anchor_sizes: tuple[tuple[int, ...], ...] = ()  # () → DEFAULT_ANCHORS[family]
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    roi_hidden: int = 128  # R-CNN box head width
    mask_channels: tuple[int, ...] = field(default=(64, 64))

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown detector family {self.family!r}; known: {FAMILIES}")
        if not self.categories or min(self.categories) < 1:
            raise ValueError("categories need ids ≥ 1 (0 is the R-CNNs' background)")

    @property
    def anchors(self) -> tuple[tuple[int, ...], ...]:
        return self.anchor_sizes or DEFAULT_ANCHORS[self.family]

    def to_json(self) -> dict:
        data = asdict(self)
        data["categories"] = {str(k): v for k, v in self.categories.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> ClassicSpec:
        """Rebuild from `to_json()`; unknown keys are a ValueError naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown detector fields {unknown}; expected {sorted(names)}")
        data = dict(data)
        data["categories"] = {int(k): v for k, v in data.get("categories", {}).items()}
        tuples = {k: _tuples(v) for k, v in data.items() if isinstance(v, list)}
        return cls(**{**data, **tuples})


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


class TimmFPN(nn.Module):
    """A timm CNN's feature stages (random weights) → a feature pyramid: {"0": P_first, ...}."""

    def __init__(self, name: str, out_indices: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.body = timm.create_model(
            name, pretrained=False, features_only=True, out_indices=out_indices
        )
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), channels)
        self.out_channels = channels  # what torchvision's detectors read

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.body(x)  # [(B, C_i, H / s_i, W / s_i)]
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))


def build_classic(spec: ClassicSpec) -> nn.Module:
    """A randomly initialised torchvision detector as `spec` says (nothing downloaded)."""
    backbone = TimmFPN(spec.backbone, spec.out_indices, spec.fpn_channels)
    levels = len(spec.out_indices)
    if len(spec.anchors) != levels:
        raise ValueError(f"{len(spec.anchors)} anchor-size tuples for {levels} feature levels")
    common = dict(
        min_size=spec.image_size,
        max_size=spec.image_size,
        image_mean=list(spec.mean),
        image_std=list(spec.std),
        detections_per_img=100,  # what COCO's AP reads (RetinaNet and FCOS default to 300)
    )
    num_classes = max(spec.categories) + 1
    ratios = (1.0,) if spec.family == "fcos" else spec.aspect_ratios
    anchors = AnchorGenerator(spec.anchors, (ratios,) * levels)
    per_location = anchors.num_anchors_per_location()[0]
    channels = spec.fpn_channels
    if spec.family == "retinanet":  # GroupNorm in the head: without it, scratch training stalls
        norm = partial(nn.GroupNorm, 16)
        head = RetinaNetHead(channels, per_location, num_classes, norm_layer=norm)
        return RetinaNet(backbone, num_classes, anchor_generator=anchors, head=head, **common)
    if spec.family == "fcos":
        return FCOS(backbone, num_classes, anchor_generator=anchors, **common)
    names = [str(i) for i in range(levels)]
    rcnn = dict(
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(channels, per_location),
        # sampling ratio 1 and 64-RoI batches: roi_align's backward at the defaults took half
        # of a training step on a CPU
        box_roi_pool=MultiScaleRoIAlign(names, 7, sampling_ratio=1),
        box_head=TwoMLPHead(channels * 49, spec.roi_hidden),
        box_predictor=FastRCNNPredictor(spec.roi_hidden, num_classes),
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=64,
    )
    if spec.family == "faster_rcnn":
        return FasterRCNN(backbone, None, **rcnn, **common)  # classes: the predictor's
    width = spec.mask_channels[-1]
    mask = dict(
        mask_roi_pool=MultiScaleRoIAlign(names, 14, sampling_ratio=1),
        mask_head=MaskRCNNHeads(channels, spec.mask_channels, 1),
        mask_predictor=MaskRCNNPredictor(width, width, num_classes),
    )
    return MaskRCNN(backbone, None, **rcnn, **mask, **common)


class ClassicDetector:
    """A torchvision detector behind the `Detector` interface."""

    def __init__(self, model: nn.Module, spec: ClassicSpec) -> None:
        self.module, self.spec = model, spec
        self.name = spec.family
        self.categories = dict(spec.categories)
        self.mean, self.std = tuple(spec.mean), tuple(spec.std)

    @property
    def max_detections(self) -> int:
        """torchvision's `detections_per_img` (the R-CNNs': their RoI heads')."""
        heads = getattr(self.module, "roi_heads", self.module)
        return int(heads.detections_per_img)

    @torch.no_grad()
    def predict(
        self, images: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> list[Prediction]:
        """images: (B, 3, H, W) in [0, 1] → detections per image (masks: prob > 0.5). The
        pixel mask is not used: torchvision's detectors see padding as image."""
        self.module.eval()
        outputs = self.module(list(images))
        known = torch.tensor(sorted(self.categories), device=images.device)
        found = []
        for o in outputs:  # the sigmoid heads also score id 0, which is no category
            keep = torch.isin(o["labels"], known)
            masks = o["masks"][keep, 0] > 0.5 if "masks" in o else None
            found.append(Prediction(o["boxes"][keep], o["scores"][keep], o["labels"][keep], masks))
        return found

    def losses(self, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        """The detector's own training losses per image, in eval mode (`detectors.losses`)."""
        return classic_losses(self.module, images, targets)

    def inversion_losses(
        self, images: torch.Tensor, targets: list[dict]
    ) -> dict[str, torch.Tensor]:
        """Per image {"cls", "reg"} (Mask R-CNN also "mask" when the targets have masks) toward
        the targets after the detector's Z-step, in eval mode. RetinaNet, FCOS:
        `detectors.dense_zstep`; the R-CNNs: their own training pieces (`detectors.losses`),
        RPN and RoI terms added (classification: objectness + classifier; box: both box terms).
        """
        if self.name in ("retinanet", "fcos"):
            raw, per_level = self._dense(images)
            return dense_inversion_losses(self.module, raw, per_level, targets)
        parts = classic_losses(self.module, images, targets)
        out = {
            "cls": parts["loss_objectness"] + parts["loss_classifier"],
            "reg": parts["loss_rpn_box_reg"] + parts["loss_box_reg"],
        }
        if "loss_mask" in parts:
            out["mask"] = parts["loss_mask"]
        return out

    @torch.no_grad()
    def candidates(self, size: tuple[int, int]) -> Candidates:
        """The anchors (RetinaNet, the R-CNNs' RPN) or points (FCOS, as its zero-size anchors)
        of an (H, W) canvas, level by level as the detector orders them."""
        model = self.module.eval()
        blank = torch.zeros(1, 3, *size, device=next(model.parameters()).device)
        image_list, _ = model.transform(list(blank))
        levels = list(model.backbone(image_list.tensors).values())
        generator = model.rpn.anchor_generator if hasattr(model, "rpn") else model.anchor_generator
        boxes = generator(image_list, levels)[0]  # (A, 4)
        per_location = generator.num_anchors_per_location()[0]
        counts = torch.tensor([f.shape[-2] * f.shape[-1] * per_location for f in levels])
        index = torch.repeat_interleave(torch.arange(len(levels)), counts)
        return Candidates(len(boxes), boxes, index)

    def candidate_log_score(
        self, images: torch.Tensor, candidate: int, category: int
    ) -> torch.Tensor:
        """(B,) log score of `category` at one candidate (see `Detector.candidate_log_score`)."""
        if self.name in ("retinanet", "fcos"):
            raw = self._dense(images)[0]
            score = F.logsigmoid(raw["cls_logits"][:, candidate, category].float())
            if "bbox_ctrness" in raw:
                score = (score + F.logsigmoid(raw["bbox_ctrness"][:, candidate, 0].float())) / 2
            return score
        logits, _, _ = self._anchor_roi(images, candidate)
        return logits.float().log_softmax(-1)[:, category]

    def candidate_log_odds(
        self, images: torch.Tensor, candidate: int, category: int
    ) -> torch.Tensor:
        """(B,) non-saturating log-odds of `category` at one candidate (see
        `Detector.candidate_log_odds`)."""
        if self.name in ("retinanet", "fcos"):
            raw = self._dense(images)[0]
            odds = raw["cls_logits"][:, candidate, category].float()
            if "bbox_ctrness" in raw:
                odds = (odds + raw["bbox_ctrness"][:, candidate, 0].float()) / 2
            return odds
        logits, _, _ = self._anchor_roi(images, candidate)
        return softmax_log_odds(logits.float(), category)

    def candidate_box(
        self, images: torch.Tensor, candidate: int, category: int | None = None
    ) -> torch.Tensor:
        """(B, 4) xyxy pixels one candidate predicts (see `Detector.candidate_box`)."""
        if self.name in ("retinanet", "fcos"):
            raw = self._dense(images)[0]
            codes, anchors = raw["bbox_regression"][:, candidate], raw["anchors"][:, candidate]
            return decode(self.module, codes.float(), anchors.float())
        logits, codes, anchor = self._anchor_roi(images, candidate)
        batch = torch.arange(len(images), device=images.device)
        if category is None:  # each image's best real class (column 0 is background)
            chosen = logits[:, 1:].argmax(-1) + 1
        else:
            chosen = torch.full_like(batch, category)
        codes = codes.float().view(len(images), -1, 4)[batch, chosen]  # (B, 4)
        rois = anchor[None].float().expand(len(images), 4)
        return self.module.roi_heads.box_coder.decode_single(codes, rois)

    def _anchor_roi(
        self, images: torch.Tensor, candidate: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """R-CNNs: the RoI head on anchor `candidate`'s box as one fixed RoI per image, in eval
        mode: class logits (B, K + 1), box regression (B, 4 (K + 1)), the anchor (4,) xyxy."""
        model = self.module.eval()
        image_list, _ = model.transform(list(images))
        features = model.backbone(image_list.tensors)
        anchor = model.rpn.anchor_generator(image_list, list(features.values()))[0][candidate]
        rois = [anchor[None]] * len(images)  # one fixed RoI per image: the anchor's box
        heads = model.roi_heads
        pooled = heads.box_roi_pool(features, rois, image_list.image_sizes)
        logits, codes = heads.box_predictor(heads.box_head(pooled))
        return logits, codes, anchor

    def raw_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pre-post-processing outputs in eval mode (see the family functions below)."""
        if self.name in ("retinanet", "fcos"):
            return self._dense(images)[0]
        self.module.eval()
        image_list, _ = self.module.transform(list(images))
        return _rcnn_outputs(self.module, image_list, self.module.backbone(image_list.tensors))

    def _dense(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], list[int]]:
        """RetinaNet / FCOS raw outputs and the number of candidates on each level."""
        model = self.module.eval()
        image_list, _ = model.transform(list(images))
        features = list(model.backbone(image_list.tensors).values())
        per_location = model.anchor_generator.num_anchors_per_location()[0]
        per_level = [f.shape[-2] * f.shape[-1] * per_location for f in features]
        return _dense_outputs(model, image_list, features), per_level


def _dense_outputs(model, image_list, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """RetinaNet / FCOS: per anchor (point) class logits (B, A, K), box regression (B, A, 4)
    (FCOS also centerness (B, A, 1)) and the anchors (B, A, 4) xyxy pixels."""
    out = dict(model.head(features))
    out["anchors"] = torch.stack(model.anchor_generator(image_list, features))
    return out


def _rcnn_outputs(model, image_list, features) -> dict[str, torch.Tensor]:
    """Faster / Mask R-CNN: RPN objectness (B, A) and deltas (B, A, 4) per anchor; the RoI
    head's class logits (R, K) and box regression (R, 4K) on the eval-mode proposals, whose
    image index is `proposal_image` (R,)."""
    levels = list(features.values())
    objectness, deltas = model.rpn.head(levels)
    flat_objectness, flat_deltas = concat_box_prediction_layers(objectness, deltas)
    batch = len(image_list.tensors)
    proposals, _ = model.rpn(image_list, features)
    pooled = model.roi_heads.box_roi_pool(features, proposals, image_list.image_sizes)
    class_logits, box_regression = model.roi_heads.box_predictor(model.roi_heads.box_head(pooled))
    index = torch.cat([torch.full((len(p),), i, device=p.device) for i, p in enumerate(proposals)])
    return {
        "rpn_objectness": flat_objectness.view(batch, -1),
        "rpn_deltas": flat_deltas.view(batch, -1, 4),
        "class_logits": class_logits,
        "box_regression": box_regression,
        "proposals": torch.cat(proposals),
        "proposal_image": index,
    }
