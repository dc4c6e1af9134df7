"""A detection dataset over any COCO instances file: real COCO, coco128, or the shapes world.

Class labels are the COCO category ids themselves (as in HF's COCO DETRs, whose logits are
indexed by category id), so one detector config serves every file with the same ids.
Bad annotations are dropped and counted once, at construction; bad images are skipped (or
raise) at load time and counted by the collate function, so counts survive worker processes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from inverse_detr.data.transforms import DetrTransform
from inverse_detr.errors import UserError

log = logging.getLogger(__name__)

MIN_BOX_SIDE = 1.0  # px: boxes with w or h ≤ this are degenerate
# what a broken, truncated, zero-byte, bomb or missing image file raises while decoding
BAD_IMAGE_ERRORS = (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError)


class DataError(UserError, ValueError):
    """Unusable data (missing file or folder, unreadable annotations); one-line message."""


@dataclass
class Target:
    """Annotations of one image, in DETR's frame (see `DetrTransform`).

    labels:  (N,) long category ids
    boxes:   (N, 4) float normalised (cx, cy, w, h) of the real image (DETR's frame)
    size:    (h, w) the real image covers on the model-input canvas (top-left; the rest is
             padding); boxes in canvas pixels are boxes · (w, h, w, h)
    masks:   (N, H, W) bool visible-part instance masks on the canvas ((0, H, W) when the
             dataset was built with `with_masks=False`)
    image_id: the COCO image id;  orig_size: (h, w) of the file
    crowd_labels: (M,) long, crowd_boxes: (M, 4) like `boxes`: the image's crowd regions, kept
             out of training but passed to AP as `iscrowd` (detections there are ignored)
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    image_id: int
    orig_size: tuple[int, int]
    size: tuple[int, int]
    crowd_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    crowd_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Target:
        move = {"device": device, "non_blocking": non_blocking}
        return Target(
            self.labels.to(**move),
            self.boxes.to(**move),
            self.masks.to(**move),
            self.image_id,
            self.orig_size,
            self.size,
            self.crowd_labels.to(**move),
            self.crowd_boxes.to(**move),
        )

    def as_hf_labels(self) -> dict[str, torch.Tensor]:
        """The `labels=[...]` entry HF's DETR loss expects."""
        return {"class_labels": self.labels, "boxes": self.boxes}


@dataclass
class Sample:
    """One decoded image: pixel_values (3, H, W) normalised; pixel_mask (H, W) long."""

    pixel_values: torch.Tensor
    pixel_mask: torch.Tensor
    target: Target

    def hflip(self) -> Sample:
        """The image mirrored left-right inside its real (unpadded) part, boxes and masks too."""
        t, (_, w) = self.target, self.target.size
        pixels, masks = self.pixel_values.clone(), t.masks.clone()
        pixels[..., :w] = pixels[..., :w].flip(-1)
        masks[..., :w] = masks[..., :w].flip(-1)
        boxes, crowd = t.boxes.clone(), t.crowd_boxes.clone()
        boxes[:, 0], crowd[:, 0] = 1.0 - boxes[:, 0], 1.0 - crowd[:, 0]
        target = replace(t, boxes=boxes, masks=masks, crowd_boxes=crowd)
        return Sample(pixels, self.pixel_mask, target)


@dataclass
class AnnotationStats:
    """What construction dropped from the annotation file, by reason."""

    dropped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"


def read_categories(annotation_file: Path) -> dict[int, str]:
    """Category id → name of a COCO file (read without indexing its annotations)."""
    try:
        data = json.loads(Path(annotation_file).read_text())
        return {int(c["id"]): str(c["name"]) for c in data["categories"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{annotation_file}: no readable COCO categories ({err})") from None


def read_coco(annotation_file: Path) -> COCO:
    """pycocotools' COCO index of `annotation_file`, with one-line errors."""
    if not annotation_file.is_file():
        raise DataError(f"annotation file not found: {annotation_file}")
    try:
        data = json.loads(annotation_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{annotation_file}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= data.keys():
        raise DataError(
            f"{annotation_file}: not a COCO instances file (needs images, "
            "annotations and categories)"
        )
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
    except (KeyError, TypeError) as err:
        raise DataError(
            f"{annotation_file}: malformed COCO entry ({type(err).__name__}: {err})"
        ) from None
    return coco


AUGMENTATIONS = ("none", "hflip")  # random: the same image differs between epochs


class CocoDetection(Dataset):
    """Images with boxes, labels and instance masks from a COCO instances file.

    `__getitem__` returns a `Sample`, or None for an unreadable image when
    `on_bad_image="skip"` (the collate function drops and counts those).
    """

    def __init__(
        self,
        images_dir: str | Path,
        annotation_file: str | Path,
        transform: DetrTransform,
        on_bad_image: str = "skip",
        max_images: int = 0,
        with_masks: bool = True,
        augment: str = "none",
    ) -> None:
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
        self.augment = augment
        self.images_dir = Path(images_dir).expanduser()
        if not self.images_dir.is_dir():
            raise DataError(f"image folder not found: {self.images_dir}")
        if on_bad_image not in ("skip", "error"):
            raise ValueError(f"on_bad_image must be skip or error, got {on_bad_image!r}")
        self.coco_file = Path(annotation_file).expanduser()
        self.coco = read_coco(self.coco_file)
        self.transform = transform
        self.on_bad_image = on_bad_image
        self.with_masks = with_masks
        self.categories = {c["id"]: c for c in self.coco.dataset["categories"]}
        self.image_ids = sorted(self.coco.imgs)
        if max_images > 0:
            self.image_ids = self.image_ids[:max_images]
        self.stats = AnnotationStats()
        self.annotations = {i: self._clean(self.coco.imgToAnns.get(i, [])) for i in self.image_ids}
        self.crowds = {i: self._crowds(self.coco.imgToAnns.get(i, [])) for i in self.image_ids}
        if set(self.stats.dropped) - {"crowd"}:
            log.warning("%s: dropped annotations: %s", annotation_file, self.stats.summary())

    def _clean(self, anns: list[dict]) -> list[dict]:
        kept = []
        for ann in anns:
            w, h = ann["bbox"][2], ann["bbox"][3]
            if ann.get("iscrowd", 0):
                self.stats.dropped["crowd"] += 1
            elif ann["category_id"] not in self.categories:
                self.stats.dropped["unknown category"] += 1
            elif w <= MIN_BOX_SIDE or h <= MIN_BOX_SIDE:
                self.stats.dropped["degenerate box"] += 1
            else:
                kept.append(ann)
        return kept

    def _crowds(self, anns: list[dict]) -> list[dict]:
        """Crowd regions of known categories: not trained on, but ignored regions for AP."""
        return [a for a in anns if a.get("iscrowd", 0) and a["category_id"] in self.categories]

    def __len__(self) -> int:
        return len(self.image_ids)

    def _open(self, path: Path) -> Image.Image:
        with warnings.catch_warnings():
            # PIL's soft decompression-bomb limit is a warning; treat it as an error too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(path) as image:
                    image.load()
                    return image.copy() if image.mode != "P" else image.convert("RGBA")
            except Image.DecompressionBombWarning as warning:
                raise Image.DecompressionBombError(str(warning)) from None

    def __getitem__(self, index: int) -> Sample | None:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.images_dir / info["file_name"]
        try:
            image = self._open(path)
        except BAD_IMAGE_ERRORS as err:
            if self.on_bad_image == "error":
                raise DataError(f"bad image {path}: {err}") from None
            log.warning("skipping bad image %s: %s", path, str(err).splitlines()[0] or type(err))
            return None
        pixels, pixel_mask, plan = self.transform.image(image)
        target = self._target(image_id, (image.height, image.width), plan)
        sample = Sample(pixels, pixel_mask, target)
        if self.augment == "hflip" and torch.rand(()) < 0.5:  # workers are seeded by Lightning
            sample = sample.hflip()
        return sample

    def _target(self, image_id: int, size: tuple[int, int], plan) -> Target:
        anns = self.annotations[image_id]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        masks = np.zeros((len(anns) if self.with_masks else 0, *size), dtype=bool)  # (N, h0, w0)
        for k, ann in enumerate(anns if self.with_masks else []):
            masks[k] = self._decode_mask(ann, size)
        crowds = self.crowds[image_id]
        crowd_boxes = torch.tensor([a["bbox"] for a in crowds], dtype=torch.float32).reshape(-1, 4)
        return Target(
            labels=torch.tensor([a["category_id"] for a in anns], dtype=torch.long),
            boxes=self.transform.boxes(boxes, size),
            masks=self.transform.masks(torch.from_numpy(masks), plan),
            image_id=int(image_id),
            orig_size=size,
            size=plan.content,
            crowd_labels=torch.tensor([a["category_id"] for a in crowds], dtype=torch.long),
            crowd_boxes=self.transform.boxes(crowd_boxes, size),
        )

    def _decode_mask(self, ann: dict, size: tuple[int, int]) -> np.ndarray:
        """(h0, w0) bool mask of `ann`; polygons and RLE alike, at the file's real size."""
        segmentation = ann.get("segmentation")
        if not segmentation:  # no mask given: the box is the best mask we have
            mask = np.zeros(size, dtype=bool)
            x, y, w, h = (round(v) for v in ann["bbox"])
            mask[y : y + h, x : x + w] = True
            return mask
        info = self.coco.imgs[ann["image_id"]]
        if (info["height"], info["width"]) != size:
            # the JSON's size disagrees with the file: decode at the JSON's, then resize
            rle = self.coco.annToRLE(ann)
            decoded = Image.fromarray(mask_utils.decode(rle) * 255).resize(size[::-1])
            return np.asarray(decoded) > 127
        return mask_utils.decode(self.coco.annToRLE(ann)).astype(bool)

    def category_names(self) -> dict[int, str]:
        return {cid: c["name"] for cid, c in self.categories.items()}
