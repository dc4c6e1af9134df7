"""Inverse encoder: DETR's encoder output → its input, the backbone embedding."""

from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Module):
    """DETR's transformer FFN: Linear, ReLU, dropout, Linear, dropout (before the residual)."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, ffn_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, d) -> (B, N, d)."""
        return self.net(x)


class InverseEncoderLayer(nn.Module):
    """One post-norm DETR encoder layer: q = k = x + pos, v = x."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(
            d_model, num_heads, dropout=dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x, pos: (B, HW, d); key_padding_mask: (B, HW) bool, True = ignore. Returns (B, HW, d)."""
        query = key = x + pos
        attended, _ = self.self_attn(
            query, key, x, key_padding_mask=key_padding_mask, need_weights=False
        )
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.ffn(x))


class InverseEncoder(nn.Module):
    """Reconstructs the backbone embedding from the encoder output, DETR-encoder layout."""

    def __init__(
        self,
        d_model: int = 256,
        num_heads: int = 8,
        num_layers: int = 6,
        ffn_dim: int = 2048,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(
            InverseEncoderLayer(d_model, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        xavier_init(self)

    def forward(
        self, x: torch.Tensor, spatial_pos: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: (B, HW, d) encoder output (or any encoder layer); spatial_pos: (B, HW, d) sine
        position embedding; mask: (B, HW) bool, True = valid token, or None (all valid).

        Returns (B, HW, d), the backbone-embedding estimate.
        """
        key_padding_mask = padding_mask(mask, x)
        for layer in self.layers:
            x = layer(x, spatial_pos, key_padding_mask)
        return x


def padding_mask(mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor | None:
    """(B, HW) bool True = valid → nn.MultiheadAttention's key_padding_mask (True = ignore)."""
    if mask is None:
        return None
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(tokens.shape[:2]):
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(tokens.shape[:2])} (True = valid), "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    return ~mask


def xavier_init(module: nn.Module) -> None:
    """DETR's transformer initialisation: Xavier-uniform on every matrix, biases as built."""
    for parameter in module.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)
