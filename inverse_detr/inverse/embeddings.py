"""The typed result of one frozen DETR forward pass: every stage's embedding.

Kept free of transformers so that `inverse/` (pure nn.Modules) can consume it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class ForwardEmbeddings:
    """Every DETR stage's output for one batch, from ONE forward pass.

    backbone:       (B, HW, d) 1×1-projected backbone embedding, before positional embeddings
    grid:           (H', W') token grid of the backbone feature map (HW = H'·W')
    spatial_pos:    (B, HW, d) sine position embedding of the token grid
    mask:           (B, HW) bool, True where the token covers real (non-padding) pixels
    encoder_layers: tuple of L_enc + 1 tensors (B, HW, d); [0] = backbone, [-1] = encoder output
    decoder_layers: tuple of L_dec + 1 tensors (B, Q, d); [0] = zero query input,
                    [1..L_dec] = each layer's output after the decoder's final LayerNorm
                    (as DETR's auxiliary heads see it); [-1] = the last decoder output
    logits:         (B, Q, C + 1) class logits, last = "no object"
    boxes:          (B, Q, 4) normalised (cx, cy, w, h) in [0, 1]
    query_pos:      (Q, d) learned object-query embeddings
    image_size:     (H, W) of the pixel_values the pass ran on
    """

    backbone: torch.Tensor
    grid: tuple[int, int]
    spatial_pos: torch.Tensor
    mask: torch.Tensor
    encoder_layers: tuple[torch.Tensor, ...]
    decoder_layers: tuple[torch.Tensor, ...]
    logits: torch.Tensor
    boxes: torch.Tensor
    query_pos: torch.Tensor
    image_size: tuple[int, int]

    @property
    def encoder(self) -> torch.Tensor:
        """(B, HW, d) encoder output."""
        return self.encoder_layers[-1]

    @property
    def decoder(self) -> torch.Tensor:
        """(B, Q, d) last decoder layer output."""
        return self.decoder_layers[-1]

    def detach(self) -> ForwardEmbeddings:
        """A copy whose tensors carry no autograd history."""
        return self.map(lambda t: t.detach())

    def to(self, device: torch.device | str) -> ForwardEmbeddings:
        return self.map(lambda t: t.to(device))

    def map(self, fn) -> ForwardEmbeddings:
        """Apply `fn` to every tensor field (tuples of tensors element-wise)."""
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                changes[f.name] = fn(value)
            elif isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
                changes[f.name] = tuple(fn(v) for v in value)
        return replace(self, **changes)
