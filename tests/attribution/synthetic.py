"""A synthetic detector whose class reads only an object's interior and whose box reads only
its edges, and the image it is read on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIZE = 64
BOX = (16, 16, 48, 48)  # the square object, xyxy pixels
STRIP = 2  # px: each box coordinate reads the edge strength this far either side of its edge


class InteriorAndEdges(nn.Module):
    """(B, 3, H, W) → (B, 2, H, W): channel 0 the brightness eroded by a 7 × 7 window (bright
    only ≥ 3 px inside a bright region: interior), channel 1 the Sobel edge strength."""

    def __init__(self) -> None:
        super().__init__()
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("kernels", torch.stack([sobel, sobel.T])[:, None])
        self.gain = nn.Parameter(torch.ones(()))  # something for `parameters()` to find

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        gray = images.mean(1, keepdim=True) * self.gain
        interior = -F.max_pool2d(-gray, 7, stride=1, padding=3)
        gradients = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), self.kernels)
        edges = (gradients.pow(2).sum(1, keepdim=True) + 1e-6).sqrt()
        return torch.cat([interior, edges], 1)


class SyntheticNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = InteriorAndEdges()


class SyntheticDetector:
    """One candidate (0), one category (1). Class log-odds: 8 · (mean interior channel in the
    box) − 2. Box coordinate: its edge's place + 0.05 · the edge strength in a strip of ± STRIP
    px around that edge (along the box's extent)."""

    name = "synthetic"
    categories = {1: "square"}  # noqa: RUF012 (a plain attribute, as in the Detector protocol)
    max_detections = 1
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def __init__(self) -> None:
        self.module = SyntheticNet().eval().requires_grad_(False)

    def candidate_log_odds(self, images, candidate, category) -> torch.Tensor:
        x1, y1, x2, y2 = BOX
        inside = self.module.features(images)[:, 0, y1:y2, x1:x2]
        return 8 * inside.mean((1, 2)) - 2

    def candidate_log_score(self, images, candidate, category) -> torch.Tensor:
        return F.logsigmoid(self.candidate_log_odds(images, candidate, category))

    def candidate_box(self, images, candidate, category=None) -> torch.Tensor:
        edges = self.module.features(images)[:, 1]
        x1, y1, x2, y2 = BOX
        strips = (
            edges[:, y1:y2, x1 - STRIP : x1 + STRIP],
            edges[:, y1 - STRIP : y1 + STRIP, x1:x2],
            edges[:, y1:y2, x2 - STRIP : x2 + STRIP],
            edges[:, y2 - STRIP : y2 + STRIP, x1:x2],
        )
        place = torch.tensor(BOX, dtype=images.dtype, device=images.device)
        return place + 0.05 * torch.stack([s.sum((1, 2)) for s in strips], 1)
