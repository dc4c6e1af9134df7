"""The inverse chain: reconstruct the image from any DETR stage's embedding.

stage "head":     (logits, boxes) ─head→ D̂ ─decoder→ Ê ─encoder→ B̂ ─backbone→ image
stage "decoder":  D (any layer ≥ 1)     ─decoder→ Ê ─encoder→ B̂ ─backbone→ image
stage "encoder":  E (any layer ≥ 0)                 ─encoder→ B̂ ─backbone→ image
stage "backbone": B                                             ─backbone→ image
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from inverse_detr.inverse.backbone import InverseBackbone
from inverse_detr.inverse.decoder import InverseDecoder
from inverse_detr.inverse.embeddings import ForwardEmbeddings
from inverse_detr.inverse.encoder import InverseEncoder
from inverse_detr.inverse.head import InverseHead

STAGES = ("backbone", "encoder", "decoder", "head")

# inverse modules a stage's reconstruction passes through, image side last
REQUIRED_MODULES: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone",),
    "encoder": ("encoder", "backbone"),
    "decoder": ("decoder", "encoder", "backbone"),
    "head": ("head", "decoder", "encoder", "backbone"),
}


class InverseChain(nn.Module):
    """Holds the inverse modules (any may be None when a run trains a subset) and chains them."""

    def __init__(
        self,
        backbone: InverseBackbone | None = None,
        encoder: InverseEncoder | None = None,
        decoder: InverseDecoder | None = None,
        head: InverseHead | None = None,
    ) -> None:
        super().__init__()
        # registered even when None, so that a module set later lands in state_dict
        self.add_module("backbone", backbone)
        self.add_module("encoder", encoder)
        self.add_module("decoder", decoder)
        self.add_module("head", head)

    def reconstruct(
        self,
        emb: ForwardEmbeddings,
        stage: str,
        layer: int | None = None,
        soft: bool | None = None,
    ) -> torch.Tensor:
        """Image reconstructed from `stage` (layer: see `reconstruct_embedding`).

        Returns (B, 3, H, W) in [0, 1] with (H, W) = emb.image_size: resized bilinearly when the
        image size is not a multiple of the backbone stride.
        """
        self._require(stage, REQUIRED_MODULES[stage] if stage in STAGES else ())
        tokens = self.reconstruct_embedding(emb, stage, layer, soft)  # (B, HW, d)
        image = self.backbone(tokens, emb.grid)  # (B, 3, H'·stride, W'·stride)
        return fit_to_size(image, emb.image_size)

    def forward(
        self,
        emb: ForwardEmbeddings,
        stage: str,
        layer: int | None = None,
        soft: bool | None = None,
    ) -> torch.Tensor:
        """Same as `reconstruct`, so that hooks and wrappers see a forward call."""
        return self.reconstruct(emb, stage, layer, soft)

    def reconstruct_embedding(
        self,
        emb: ForwardEmbeddings,
        stage: str,
        layer: int | None = None,
        soft: bool | None = None,
    ) -> torch.Tensor:
        """(B, HW, d) backbone-embedding estimate that `reconstruct` feeds to the inverse backbone.

        layer: which forward layer enters the chain; "encoder": 0..L_enc (0 = the backbone
        embedding itself; default L_enc, the encoder output); "decoder": 1..L_dec (default
        L_dec, the last layer; 0 is the all-zero query input); "backbone" and "head": None.
        soft: the inverse head's class code (see `InverseHead`); ignored by the other stages.
        For stage "backbone" this is emb.backbone itself.
        """
        self._require(stage, REQUIRED_MODULES[stage][:-1] if stage in STAGES else ())
        depth = STAGES.index(stage)
        if depth in (0, 3) and layer is not None:
            raise ValueError(f"stage {stage!r} has no layers: pass layer=None, got {layer}")
        if depth == 0:
            return emb.backbone
        if depth == 1:
            encoded = emb.encoder_layers[_layer_index("encoder", layer, emb.encoder_layers, 0)]
        else:
            if depth == 3:
                decoded = self.head(emb.logits, emb.boxes, soft=soft)  # (B, Q, d) D̂
            else:
                decoded = emb.decoder_layers[_layer_index("decoder", layer, emb.decoder_layers, 1)]
            encoded = self.decoder(decoded, emb.spatial_pos, emb.mask)  # (B, HW, d) Ê
        return self.encoder(encoded, emb.spatial_pos, emb.mask)  # (B, HW, d) B̂

    def _require(self, stage: str, names: tuple[str, ...]) -> None:
        """Raises ValueError for an unknown stage or for missing inverse modules."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise ValueError(
                f"stage {stage!r} needs the inverse module(s) {', '.join(missing)}, "
                "which this InverseChain does not hold"
            )


def fit_to_size(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, h, w) → (B, 3, *size), bilinear, only when the image side is not a multiple of
    the backbone stride (otherwise returned as is)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False)


def _layer_index(
    stage: str, layer: int | None, layers: tuple[torch.Tensor, ...], first: int
) -> int:
    """Validated index into a stage's layer tuple; None = the last layer."""
    last = len(layers) - 1
    if layer is None:
        return last
    if not first <= layer <= last:
        raise ValueError(f"{stage} layer {layer} out of range: valid layers are {first}..{last}")
    return layer
