"""Target layouts: the (category, box) sets a generated image should make a detector report.

Layouts are read from any COCO instances file (the shapes world's val split included) and
live in a canvas-free frame: normalised (cx, cy, w, h) boxes, so one layout fits any canvas
size; `Layout.targets` gives the pixel targets every detector's `inversion_losses` takes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pycocotools.coco import COCO
from torchvision.ops import box_convert, clip_boxes_to_image

from inverse_detr.data.coco import DataError, read_coco

MIN_BOX_SIDE = 1.0  # px of the source image: thinner boxes are degenerate


@dataclass
class Layout:
    """One target layout.

    labels: (N,) long category ids (the dataset's);  boxes: (N, 4) normalised cxcywh
    image_id: where it came from (the COCO image id, or the layout's index)
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    image_id: int

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Layout:
        return Layout(self.labels.to(device), self.boxes.to(device), self.image_id)

    def shifted(self, shift: torch.Tensor) -> Layout:
        """The layout moved by shift: (2,) normalised (dx, dy), e.g. a row of `box_shift`.
        Centres are kept on the canvas; a jittered image wraps round, its boxes do not."""
        boxes = self.boxes.clone()
        boxes[:, :2] = (boxes[:, :2] + shift.to(boxes)).clamp(0.0, 1.0)
        return Layout(self.labels, boxes, self.image_id)

    def pixel_boxes(self, size: tuple[int, int]) -> torch.Tensor:
        """(N, 4) xyxy boxes in pixels of an (H, W) canvas."""
        h, w = size
        scale = torch.tensor([w, h, w, h], dtype=self.boxes.dtype, device=self.boxes.device)
        return box_convert(self.boxes, "cxcywh", "xyxy") * scale

    def targets(self, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The detector target of an (H, W) canvas: boxes (N, 4) xyxy pixels, labels (N,)."""
        return {"boxes": self.pixel_boxes(size), "labels": self.labels}


@dataclass
class LayoutSet:
    """Layouts read from a file, the category names, and what reading skipped (by reason)."""

    layouts: list[Layout]
    names: dict[int, str]
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        skips = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        return (
            f"{len(self.layouts)} layouts ({sum(map(len, self.layouts))} objects); skipped: {skips}"
        )


def read_layouts(
    annotation_file: str | Path,
    n: int = 0,
    categories: set[int] | None = None,
    max_objects: int = 0,
) -> LayoutSet:
    """The first `n` (0: all) non-empty layouts of a COCO instances file, by image id.

    Crowd regions, degenerate boxes and (given `categories`, the ids the detectors know)
    objects of other categories are skipped and counted; so are images left without objects,
    and objects beyond `max_objects` (0: no limit; a detector reports at most
    `max_detections`, a DETR one object per query).
    """
    path = Path(annotation_file).expanduser()
    coco = read_coco(path)
    skipped: Counter = Counter()
    layouts = []
    for image_id in sorted(coco.imgs):
        if n and len(layouts) == n:
            break
        try:
            layout = _layout(coco, image_id, categories, max_objects, skipped)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise DataError(
                f"{path}: image {image_id}: malformed entry ({_describe(err)})"
            ) from None
        if layout is None:
            skipped["images without objects"] += 1
        else:
            layouts.append(layout)
    if not layouts:
        raise DataError(f"{path}: no usable layout (skipped: {dict(skipped) or 'no images'})")
    try:
        names = {int(c["id"]): str(c["name"]) for c in coco.dataset["categories"]}
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: malformed category ({_describe(err)})") from None
    return LayoutSet(layouts, names, skipped)


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _layout(
    coco: COCO,
    image_id: int,
    categories: set[int] | None,
    max_objects: int,
    skipped: Counter,
) -> Layout | None:
    """The objects of `image_id` a detector can be asked for (boxes clipped to the image);
    what is left out is counted in `skipped` by reason. None when nothing is left."""
    info = coco.imgs[image_id]
    height, width = float(info["height"]), float(info["width"])
    if min(height, width) <= 0:
        raise ValueError(f"image size {width} × {height}")
    labels, boxes = [], []
    for ann in coco.imgToAnns.get(image_id, []):
        xywh = torch.tensor(ann["bbox"], dtype=torch.float32).view(1, 4)
        xyxy = clip_boxes_to_image(box_convert(xywh, "xywh", "xyxy"), (height, width))[0]
        side = float(min(xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]))  # px, of the visible part
        if ann.get("iscrowd", 0):
            skipped["crowd regions"] += 1
        elif side <= MIN_BOX_SIDE:
            skipped["degenerate boxes"] += 1
        elif categories is not None and ann["category_id"] not in categories:
            skipped["categories the detector lacks"] += 1
        elif max_objects and len(labels) == max_objects:
            skipped["objects beyond the detections per image"] += 1
        else:
            labels.append(int(ann["category_id"]))
            boxes.append(xyxy)
    if not labels:
        return None
    scale = torch.tensor([width, height, width, height])
    cxcywh = box_convert(torch.stack(boxes) / scale, "xyxy", "cxcywh")  # (N, 4) normalised
    return Layout(torch.tensor(labels, dtype=torch.long), cxcywh, int(image_id))


def write_coco(
    layouts: list[Layout], names: dict[int, str], size: tuple[int, int], path: Path
) -> Path:
    """The layouts as a COCO instances file of (H, W) canvases; image i has id i."""
    h, w = size
    images, annotations = [], []
    for index, layout in enumerate(layouts):
        images.append({"id": index, "width": w, "height": h, "file_name": f"{index:04d}.png"})
        xywh = box_convert(layout.pixel_boxes(size), "xyxy", "xywh")
        for label, box in zip(layout.labels.tolist(), xywh.tolist(), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": label,
                    "bbox": [round(v, 2) for v in box],
                    "area": round(box[2] * box[3], 2),
                    "iscrowd": 0,
                    "source_image_id": layout.image_id,
                }
            )
    categories = [{"id": cid, "name": name} for cid, name in sorted(names.items())]
    data = {"images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(data))
    return path
