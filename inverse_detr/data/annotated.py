"""One annotated image of a COCO split, whole: the image and its objects with their masks, for
analyses that look at single objects (texture removal, attribution)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torchvision.ops import box_convert


@dataclass
class AnnotatedImage:
    """image (3, H, W) in [0, 1]; its non-crowd objects' boxes (N, 4) xyxy pixels, labels (N,)
    category ids, masks (N, H, W) bool, areas (N,) COCO `area` (visible pixels)."""

    image_id: int
    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    areas: torch.Tensor


def read_annotated(coco: COCO, folder: Path, image_id: int) -> AnnotatedImage:
    """Image `image_id` of a COCO split (`folder` holds the files) with its objects."""
    info = coco.imgs[image_id]
    with Image.open(Path(folder) / info["file_name"]) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    image = torch.from_numpy(array).permute(2, 0, 1)
    anns = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
    boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).view(-1, 4)
    masks = [torch.from_numpy(coco.annToMask(a)).bool() for a in anns]
    return AnnotatedImage(
        image_id,
        image,
        box_convert(boxes, "xywh", "xyxy"),
        torch.tensor([a["category_id"] for a in anns], dtype=torch.long),
        torch.stack(masks) if masks else torch.zeros(0, *image.shape[-2:], dtype=torch.bool),
        torch.tensor([float(a["area"]) for a in anns]),
    )
