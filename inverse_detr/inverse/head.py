"""Inverse head: DETR's class logits and boxes → the last decoder layer output."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F


class InverseHead(nn.Module):
    """MLP from (class code ⊕ box) to the decoder embedding, one query at a time.

    The class code is the one-hot of the argmax ("one-hot suppression": only the decision
    survives, as in the reference) or, with `soft`, the softmax probabilities.
    """

    def __init__(
        self,
        num_labels_plus_one: int = 92,
        box_dim: int = 4,
        d_model: int = 256,
        hidden: Sequence[int] = (512, 256),
        soft: bool = False,
    ) -> None:
        super().__init__()
        self.num_labels_plus_one = num_labels_plus_one
        self.box_dim = box_dim
        self.d_model = d_model
        self.soft = soft
        widths = (num_labels_plus_one + box_dim, *hidden, d_model)
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(pairwise(widths)):
            if index:
                layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Linear(width_in, width_out))
        self.mlp = nn.Sequential(*layers)

    def class_code(self, logits: torch.Tensor, soft: bool | None = None) -> torch.Tensor:
        """logits: (B, Q, C+1) -> (B, Q, C+1) one-hot of the argmax, or softmax if soft."""
        if logits.shape[-1] != self.num_labels_plus_one:
            raise ValueError(
                f"logits have {logits.shape[-1]} classes, expected num_labels_plus_one = "
                f"{self.num_labels_plus_one}"
            )
        soft = self.soft if soft is None else soft
        if soft:
            return logits.softmax(dim=-1)
        labels = logits.argmax(dim=-1)  # (B, Q)
        return F.one_hot(labels, self.num_labels_plus_one).to(logits.dtype)

    def forward(
        self, logits: torch.Tensor, boxes: torch.Tensor, soft: bool | None = None
    ) -> torch.Tensor:
        """logits: (B, Q, C+1) class logits; boxes: (B, Q, box_dim) normalised (cx, cy, w, h);
        soft: override the constructor's choice for this call.

        Returns (B, Q, d), the last-decoder-layer-output estimate.
        """
        if boxes.shape[-1] != self.box_dim:
            raise ValueError(f"boxes have {boxes.shape[-1]} values, expected {self.box_dim}")
        code = torch.cat([self.class_code(logits, soft), boxes.to(logits.dtype)], dim=-1)
        return self.mlp(code)  # (B, Q, C+1+box_dim) -> (B, Q, d)
