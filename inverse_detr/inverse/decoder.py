"""Inverse decoder: DETR's last decoder layer output → the encoder output.

The roles of DETR's decoder are swapped: the targets are the IMAGE tokens (zeros, one per encoder
token, positioned by the sine embedding of the token grid) and the memory is the object-query
embedding D (B, Q, d), positioned by a learned embedding of the Q query slots.
"""

from __future__ import annotations

import torch
from torch import nn

from inverse_detr.inverse.encoder import FeedForward, padding_mask, xavier_init


class InverseDecoderLayer(nn.Module):
    """One post-norm DETR decoder layer: self-attention, cross-attention, FFN."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(
            d_model, num_heads, dropout=dropout, batch_first=True
        )
        self.cross_attn = nn.MultiheadAttention(
            d_model, num_heads, dropout=dropout, batch_first=True
        )
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """tgt, query_pos: (B, HW, d); memory: (B, Q, d); memory_pos: (1 or B, Q, d);
        key_padding_mask: (B, HW) bool, True = ignore (image padding). Returns (B, HW, d)."""
        query = key = tgt + query_pos
        attended, _ = self.self_attn(
            query, key, tgt, key_padding_mask=key_padding_mask, need_weights=False
        )
        tgt = self.norm1(tgt + self.dropout1(attended))
        attended, _ = self.cross_attn(
            tgt + query_pos, memory + memory_pos, memory, need_weights=False
        )
        tgt = self.norm2(tgt + self.dropout2(attended))
        return self.norm3(tgt + self.ffn(tgt))


class InverseDecoder(nn.Module):
    """Reconstructs the encoder output from the last decoder layer output, DETR-decoder layout.

    As in DETR, the first layer's self-attention sees identical (zero) values at every token, so
    its in-projection weights receive no gradient; kept for fidelity to the layout.
    """

    def __init__(
        self,
        d_model: int = 256,
        num_heads: int = 8,
        num_layers: int = 6,
        ffn_dim: int = 2048,
        num_queries: int = 100,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.num_queries = num_queries
        self.layers = nn.ModuleList(
            InverseDecoderLayer(d_model, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)  # DETR's final decoder LayerNorm
        self.memory_pos = nn.Embedding(num_queries, d_model)
        xavier_init(self)
        # N(0, 1) like DETR's query embeddings: distinct slots from the start
        nn.init.normal_(self.memory_pos.weight)

    def forward(
        self, memory: torch.Tensor, spatial_pos: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """memory: (B, Q, d) last decoder layer output; spatial_pos: (B, HW, d) sine position
        embedding of the image token grid; mask: (B, HW) bool, True = valid token, or None.

        Returns (B, HW, d), the encoder-output estimate; HW follows spatial_pos, i.e. the grid
        of the image at hand.
        """
        batch, num_queries, dim = memory.shape
        if num_queries != self.num_queries:
            raise ValueError(
                f"memory has Q = {num_queries} queries but this InverseDecoder was built for "
                f"num_queries = {self.num_queries}"
            )
        tgt = memory.new_zeros(batch, spatial_pos.shape[1], dim)  # one zero target per token
        key_padding_mask = padding_mask(mask, tgt)
        memory_pos = self.memory_pos.weight.unsqueeze(0)  # (Q, d) -> (1, Q, d), batch-broadcast
        for layer in self.layers:
            tgt = layer(tgt, spatial_pos, memory, memory_pos, key_padding_mask)
        return self.norm(tgt)
