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
import torch.nn.functional as F
from pycocotools.coco import COCO
from torchvision.ops import box_convert, clip_boxes_to_image

from inverse_detr.data.coco import DataError, read_coco

MIN_BOX_SIDE = 1.0  # px of the source image: thinner boxes are degenerate


@dataclass
class Layout:
    """One target layout.

    labels: (N,) long category ids (the dataset's);  boxes: (N, 4) normalised cxcywh
    image_id: where it came from (the COCO image id, or the layout's index)
    masks: (N, h, w) bool instance masks over the whole image at some resolution, or None
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    image_id: int
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Layout:
        masks = None if self.masks is None else self.masks.to(device)
        return Layout(self.labels.to(device), self.boxes.to(device), self.image_id, masks)

    def shifted(self, shift: torch.Tensor) -> Layout:
        """The layout moved by shift: (2,) normalised (dx, dy), e.g. a row of `box_shift`.
        Centres are kept on the canvas; a jittered image wraps round, its boxes do not, its
        masks do (rolled by the nearest whole pixel of their resolution)."""
        boxes = self.boxes.clone()
        boxes[:, :2] = (boxes[:, :2] + shift.to(boxes)).clamp(0.0, 1.0)
        masks = self.masks
        if masks is not None:
            h, w = masks.shape[-2:]
            steps = (round(float(shift[1]) * h), round(float(shift[0]) * w))
            masks = torch.roll(masks, steps, dims=(-2, -1))
        return Layout(self.labels, boxes, self.image_id, masks)

    def without_masks(self) -> Layout:
        return Layout(self.labels, self.boxes, self.image_id)

    def pixel_boxes(self, size: tuple[int, int]) -> torch.Tensor:
        """(N, 4) xyxy boxes in pixels of an (H, W) canvas."""
        h, w = size
        scale = torch.tensor([w, h, w, h], dtype=self.boxes.dtype, device=self.boxes.device)
        return box_convert(self.boxes, "cxcywh", "xyxy") * scale

    def targets(self, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The detector target of an (H, W) canvas: boxes (N, 4) xyxy pixels, labels (N,),
        and masks (N, H, W) uint8 when the layout has masks."""
        out = {"boxes": self.pixel_boxes(size), "labels": self.labels}
        if self.masks is not None:
            out["masks"] = resize_masks(self.masks, size).to(torch.uint8)
        return out


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) bool masks → (N, H, W) bool, nearest neighbour (unchanged at that size)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    if not len(masks):
        return masks.new_zeros(0, *size)
    resized = F.interpolate(masks[:, None].float(), size=tuple(size), mode="nearest")
    return resized[:, 0] > 0.5


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
    mask_size: tuple[int, int] | None = None,
) -> LayoutSet:
    """The first `n` (0: all) non-empty layouts of a COCO instances file, by image id.

    Crowd regions, degenerate boxes and (given `categories`, the ids the detectors know)
    objects of other categories are skipped and counted; so are images left without objects,
    and objects beyond `max_objects` (0: no limit; a detector reports at most
    `max_detections`, a DETR one object per query). With `mask_size` (H, W), a layout whose
    objects all have a segmentation also gets their masks at that size (counted otherwise).
    """
    path = Path(annotation_file).expanduser()
    coco = read_coco(path)
    skipped: Counter = Counter()
    layouts = []
    for image_id in sorted(coco.imgs):
        if n and len(layouts) == n:
            break
        try:
            found = _layout(coco, image_id, categories, max_objects, skipped)
            layout = None if found is None else found[0]
            if found is not None and mask_size is not None:
                layout = _with_masks(coco, *found, mask_size, skipped)
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
) -> tuple[Layout, list] | None:
    """The objects of `image_id` a detector can be asked for (boxes clipped to the image) and
    their annotation ids; what is left out is counted in `skipped` by reason. None when nothing
    is left."""
    info = coco.imgs[image_id]
    height, width = float(info["height"]), float(info["width"])
    if min(height, width) <= 0:
        raise ValueError(f"image size {width} × {height}")
    labels, boxes, kept = [], [], []
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
            kept.append(ann["id"])
    if not labels:
        return None
    scale = torch.tensor([width, height, width, height])
    cxcywh = box_convert(torch.stack(boxes) / scale, "xyxy", "cxcywh")  # (N, 4) normalised
    return Layout(torch.tensor(labels, dtype=torch.long), cxcywh, int(image_id)), kept


def _with_masks(
    coco: COCO, layout: Layout, kept: list, size: tuple[int, int], skipped: Counter
) -> Layout:
    """The layout with its objects' (N, H, W) masks decoded from their segmentations (any COCO
    form, pycocotools) at `size`; unchanged, and counted, when an object has none."""
    anns = [coco.anns[i] for i in kept]
    if not all(ann.get("segmentation") for ann in anns):
        skipped["layouts without masks"] += 1
        return layout
    masks = torch.stack([torch.from_numpy(coco.annToMask(ann)).bool() for ann in anns])
    return Layout(layout.labels, layout.boxes, layout.image_id, resize_masks(masks, size))


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
