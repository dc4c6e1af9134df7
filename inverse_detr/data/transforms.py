"""Decode, resize and normalise images with their boxes and masks, as DETR sees them.

Two resize modes:
- `fixed`: stretch to (H, W), as the reference code does (480×640); the pixel mask is all ones.
- `pad`:   keep the aspect ratio, fit inside (H, W), pad bottom/right with zeros after
           normalisation (as HF's image processor does); the pixel mask marks real pixels.
Boxes come out as normalised (cx, cy, w, h) relative to the real (unpadded) image, the frame
DETR is trained and predicts in (its sine position embedding is normalised over the mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.ops import box_convert

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (CMYK, RGBA, palette, grayscale, 16-bit) as 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # PIL clips high bit depths to 255 when converting; rescale the real range instead
        values = np.asarray(image, dtype=np.float64)
        top = values.max() if values.size and values.max() > 0 else 1.0
        image = Image.fromarray((values / top * 255).round().astype(np.uint8), mode="L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


@dataclass(frozen=True)
class Resize:
    """Geometry of one resize: the canvas and the scaled image inside it."""

    canvas: tuple[int, int]  # (H, W) of the output tensor
    content: tuple[int, int]  # (h, w) of the resized image inside the canvas, top-left

    @classmethod
    def plan(cls, size: tuple[int, int], canvas: tuple[int, int], mode: str) -> Resize:
        """size: (h, w) of the source image."""
        if mode == "fixed":
            return cls(canvas=canvas, content=canvas)
        if mode == "pad":
            scale = min(canvas[0] / size[0], canvas[1] / size[1])
            content = (
                max(1, min(canvas[0], round(size[0] * scale))),
                max(1, min(canvas[1], round(size[1] * scale))),
            )
            return cls(canvas=canvas, content=content)
        raise ValueError(f"unknown resize mode {mode!r}; allowed: fixed, pad")


class DetrTransform:
    """PIL image + pixel-space annotations → normalised tensor, pixel mask, DETR targets."""

    def __init__(
        self,
        image_size: tuple[int, int] = (480, 640),
        mode: str = "fixed",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        Resize.plan((1, 1), tuple(image_size), mode)  # validates mode early
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.mode = mode
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)  # (3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)  # (3, 1, 1)

    def image(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor, Resize]:
        """(3, H, W) normalised pixels, (H, W) long pixel mask, and the resize geometry."""
        image = to_rgb(image)
        plan = Resize.plan((image.height, image.width), self.image_size, self.mode)
        pixels = TF.pil_to_tensor(image)  # (3, h0, w0) uint8
        pixels = TF.resize(pixels, list(plan.content), antialias=True)
        pixels = (pixels.float() / 255.0 - self.mean) / self.std
        canvas = torch.zeros(3, *plan.canvas)
        mask = torch.zeros(plan.canvas, dtype=torch.long)
        h, w = plan.content
        canvas[:, :h, :w] = pixels
        mask[:h, :w] = 1
        return canvas, mask, plan

    @staticmethod
    def boxes(boxes_xywh: torch.Tensor, source: tuple[int, int]) -> torch.Tensor:
        """(N, 4) pixel xywh in the (h, w) source image → (N, 4) normalised cxcywh of the image
        (resizing keeps them; on the canvas they cover `Resize.content`)."""
        sy, sx = 1.0 / source[0], 1.0 / source[1]
        scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
        return box_convert(boxes_xywh.float() * scale, "xywh", "cxcywh").clamp(0.0, 1.0)

    def masks(self, masks: torch.Tensor, plan: Resize) -> torch.Tensor:
        """(N, h0, w0) bool instance masks → (N, H, W) bool on the canvas."""
        out = torch.zeros((masks.shape[0], *plan.canvas), dtype=torch.bool)
        if masks.shape[0]:
            resized = TF.resize(
                masks.to(torch.uint8), list(plan.content), TF.InterpolationMode.NEAREST
            )
            out[:, : plan.content[0], : plan.content[1]] = resized.bool()
        return out

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] on the canvas → normalised, as DETR sees them."""
        return (images - self.mean.to(images.device)) / self.std.to(images.device)

    def denormalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised → RGB in [0, 1]."""
        mean, std = self.mean.to(pixels.device), self.std.to(pixels.device)
        return (pixels * std + mean).clamp(0.0, 1.0)

    def tensors(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Resize]:
        """A batch as DETR sees it, exactly as `image` prepares files.

        images: (B, 3, h, w) RGB in [0, 1] → (B, 3, H, W) normalised, (B, H, W) long mask.
        uint8 images (e.g. from torchvision.io.read_image) are divided by 255.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        elif not images.is_floating_point():
            raise ValueError(f"images must be float RGB in [0, 1] or uint8, got {images.dtype}")
        plan = Resize.plan(tuple(images.shape[-2:]), self.image_size, self.mode)
        pixels = TF.resize(images.float(), list(plan.content), antialias=True)
        pixels = (pixels - self.mean.to(images.device)) / self.std.to(images.device)
        canvas = pixels.new_zeros(images.shape[0], 3, *plan.canvas)
        mask = torch.zeros(images.shape[0], *plan.canvas, dtype=torch.long, device=images.device)
        h, w = plan.content
        canvas[:, :, :h, :w] = pixels
        mask[:, :h, :w] = 1
        return canvas, mask, plan

    @staticmethod
    def restore(images: torch.Tensor, plan: Resize, size: tuple[int, int]) -> torch.Tensor:
        """Undo `tensors`' geometry: (B, 3, H, W) canvas → (B, 3, *size), padding cropped."""
        h, w = plan.content
        content = images[:, :, :h, :w]
        if tuple(content.shape[-2:]) == tuple(size):
            return content
        return TF.resize(content, list(size), antialias=True).clamp(0.0, 1.0)
