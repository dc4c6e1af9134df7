"""What each inverse module is trained to give back, and the masked MSE that scores it.

Each module learns its forward stage's input from its output on the TRUE forward embeddings:
  backbone: B → image   (MSE of normalised pixels inside the pixel mask)
  encoder:  E → B       decoder: D → E (the encoder output)
  head:     (class code ⊕ boxes) → D
`TOKEN_STAGES` is that table for the token stages; the backbone stage compares pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from inverse_detr.inverse.chain import STAGES, InverseChain, fit_to_size
from inverse_detr.inverse.embeddings import ForwardEmbeddings


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the positions where `mask` is true.

    pred, target: (B, N, C) tokens or (B, C, H, W) pixels;  mask: (B, N) or (B, H, W)
    """
    if pred.dim() == 4:
        weight = mask.unsqueeze(1).to(pred.dtype)  # (B, 1, H, W)
        channels = pred.shape[1]
    else:
        weight = mask.unsqueeze(-1).to(pred.dtype)  # (B, N, 1)
        channels = pred.shape[-1]
    return ((pred - target) ** 2 * weight).sum() / (weight.sum() * channels).clamp_min(1.0)


@dataclass(frozen=True)
class Pixels:
    """The true images a reconstruction is scored against.

    values: (B, 3, H, W) normalised;  mask: (B, H, W), 1 = real pixel (not padding)
    mean, std: (1, 3, 1, 1) the detector's input normalisation
    """

    values: torch.Tensor
    mask: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        """Masked MSE of `image` ((B, 3, h, w) RGB in [0, 1], resized to (H, W) if needed)
        against the true images, both in normalised pixel space."""
        image = fit_to_size(image, self.values.shape[-2:])
        return masked_mse((image - self.mean) / self.std, self.values, self.mask)


@dataclass(frozen=True)
class TokenStage:
    """A token stage: its inverse module's prediction, the embedding it must give back and the
    tokens that count. Each callable takes (chain, emb) or emb; tensors are (B, N, d), (B, N)."""

    predict: Callable[[InverseChain, ForwardEmbeddings], torch.Tensor]
    target: Callable[[ForwardEmbeddings], torch.Tensor]
    mask: Callable[[ForwardEmbeddings], torch.Tensor]


def _all_queries(emb: ForwardEmbeddings) -> torch.Tensor:
    return torch.ones(emb.decoder.shape[:2], dtype=torch.bool, device=emb.decoder.device)


TOKEN_STAGES = {
    "encoder": TokenStage(
        lambda chain, emb: chain.encoder(emb.encoder, emb.spatial_pos, emb.mask),
        lambda emb: emb.backbone,
        lambda emb: emb.mask,
    ),
    "decoder": TokenStage(
        lambda chain, emb: chain.decoder(emb.decoder, emb.spatial_pos, emb.mask),
        lambda emb: emb.encoder,
        lambda emb: emb.mask,
    ),
    "head": TokenStage(
        lambda chain, emb: chain.head(emb.logits, emb.boxes),
        lambda emb: emb.decoder,
        _all_queries,
    ),
}


# how the chain is trained: each module against its own stage's true input (the paper's
# modules), or the whole decoder → encoder → backbone chain by one image loss (its end-to-end
# comparison); END_TO_END_STAGES are the modules that objective trains
OBJECTIVES = ("stagewise", "end_to_end")
END_TO_END_STAGES = ("backbone", "encoder", "decoder")


def end_to_end_loss(chain: InverseChain, emb: ForwardEmbeddings, pixels: Pixels) -> torch.Tensor:
    """Image MSE (normalised pixels) of the reconstruction from the decoder embedding through
    the whole chain; the gradient reaches all three modules."""
    return pixels.loss(chain.reconstruct(emb, "decoder"))


def stage_loss(
    chain: InverseChain, stage: str, emb: ForwardEmbeddings, pixels: Pixels
) -> torch.Tensor:
    """One stage's MSE against its true target (the embeddings carry no autograd history)."""
    if stage == "backbone":
        return pixels.loss(chain.backbone(emb.backbone, emb.grid))
    if stage not in TOKEN_STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    table = TOKEN_STAGES[stage]
    return masked_mse(table.predict(chain, emb), table.target(emb), table.mask(emb))
