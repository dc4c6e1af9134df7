"""Inverse backbone: the 1×1-projected backbone embedding → the image's pixels."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

KINDS = ("conv", "linear")


class InverseBackbone(nn.Module):
    """Reconstructs the image from DETR's backbone embedding (the encoder's input).

    kind "conv" (the paper's stack): ConvT 1×1 d→hidden[0], ConvT 3×3 through `hidden`,
    log2(stride) ConvT 3×3 stride-2 layers through `up` (each doubles the resolution), each
    followed by `refine` ConvT 3×3 at its width and resolution (0: the paper's stack), ConvT 3×3
    up[-1]→3; BatchNorm + ReLU between layers; sigmoid.
    kind "linear" (the reference code's light variant): four 1×1 ConvT of `linear_width` + ReLU,
    then one ConvT with kernel = stride = `stride` to 3 channels; sigmoid.
    """

    def __init__(
        self,
        d_model: int = 256,
        stride: int = 32,
        kind: str = "conv",
        hidden: Sequence[int] = (2048, 1792, 1536),
        up: Sequence[int] = (1024, 512, 256, 128, 64),
        linear_width: int = 256,
        refine: int = 0,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown InverseBackbone kind {kind!r}; allowed: {', '.join(KINDS)}")
        if stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride}")
        if refine < 0:
            raise ValueError(f"refine must be ≥ 0, got {refine}")
        self.d_model = d_model
        self.stride = stride
        self.kind = kind
        if kind == "conv":
            self.layers = _conv_stack(d_model, stride, tuple(hidden), tuple(up), refine)
            # convolutions follow their weights' memory format; channels_last made the stack
            # faster on the CPU (fp32 7.1 → 6.3 s, bf16 7.5 → 3.1 s at R50 sizes, BENCHMARKS.md)
            self.layers.to(memory_format=torch.channels_last)
        else:
            self.layers = _linear_stack(d_model, stride, linear_width)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """tokens: (B, HW, d) backbone embedding, row-major over grid (H', W') as DETR flattens it.

        Returns (B, 3, H'·stride, W'·stride) pixels in [0, 1].
        """
        height, width = grid
        _, num_tokens, dim = tokens.shape
        if num_tokens != height * width or dim != self.d_model:
            raise ValueError(
                f"tokens of shape {tuple(tokens.shape)} do not match grid {tuple(grid)} "
                f"and d_model {self.d_model} (expected (B, {height * width}, {self.d_model}))"
            )
        return torch.sigmoid(self.layers(token_map(tokens, grid)))


def token_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, HW, d) tokens, row-major over grid (H', W') → (B, d, H', W'), what `layers` take."""
    batch, _, dim = tokens.shape
    # (B, HW, d) -> (B, d, HW) -> (B, d, H', W'); reshape copies the transposed view
    return tokens.transpose(1, 2).reshape(batch, dim, *grid)


def _conv_stack(
    d_model: int, stride: int, hidden: tuple[int, ...], up: tuple[int, ...], refine: int = 0
) -> nn.Sequential:
    if not hidden:
        raise ValueError("hidden must name at least one width for kind 'conv'")
    if stride & (stride - 1):
        raise ValueError(f"stride must be a power of two for kind 'conv', got {stride}")
    num_up = stride.bit_length() - 1  # log2(stride)
    if len(up) != num_up:
        raise ValueError(
            f"len(up) = {len(up)} must equal log2(stride) = {num_up} for stride {stride}: "
            "each up layer doubles the resolution"
        )
    convs = [nn.ConvTranspose2d(d_model, hidden[0], kernel_size=1)]
    convs += [nn.ConvTranspose2d(i, o, kernel_size=3, padding=1) for i, o in pairwise(hidden)]
    widths = (hidden[-1], *up)
    for i, o in pairwise(widths):
        convs.append(nn.ConvTranspose2d(i, o, kernel_size=3, stride=2, padding=1, output_padding=1))
        convs += [nn.ConvTranspose2d(o, o, kernel_size=3, padding=1) for _ in range(refine)]
    convs.append(nn.ConvTranspose2d(widths[-1], 3, kernel_size=3, padding=1))
    return _interleave(convs, batch_norm=True)


def _linear_stack(d_model: int, stride: int, width: int) -> nn.Sequential:
    convs = [nn.ConvTranspose2d(d_model, width, kernel_size=1)]
    convs += [nn.ConvTranspose2d(width, width, kernel_size=1) for _ in range(3)]
    # kernel = stride: every token paints its own stride×stride patch, no overlap
    convs.append(nn.ConvTranspose2d(width, 3, kernel_size=stride, stride=stride))
    return _interleave(convs, batch_norm=False)


def _interleave(convs: list[nn.ConvTranspose2d], batch_norm: bool) -> nn.Sequential:
    """Puts (BatchNorm +) ReLU between the convs, none after the last (the sigmoid follows)."""
    layers: list[nn.Module] = []
    for conv in convs[:-1]:
        layers.append(conv)
        if batch_norm:
            layers.append(nn.BatchNorm2d(conv.out_channels))
        layers.append(nn.ReLU(inplace=True))
    layers.append(convs[-1])
    return nn.Sequential(*layers)
