"""Cross-layer reconstruction: every intermediate layer through the inverse modules to pixels.

Encoder layer i (0 = the backbone embedding, L = the encoder output) is fed to the inverse
encoder, then the inverse backbone; decoder layer j (1..L) to the inverse decoder, then on to
pixels. The inverse modules were trained on the last layer only, so the profile shows how far
each intermediate representation is from what the stage finally hands on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from inverse_detr.analysis.stages import ScoreSums, StageScores, image_scores
from inverse_detr.analysis.subset import AnalysisError, ImageSet, embed

if TYPE_CHECKING:
    from inverse_detr.export import Inverter


@dataclass
class CrossLayerResult:
    """encoder[i]: scores of encoder layer i (0..L_enc); decoder[j - 1]: of decoder layer j
    (1..L_dec; empty when the chain has no inverse decoder); examples: title → (k, 3, H, W)."""

    encoder: list[StageScores]
    decoder: list[StageScores]
    images: int
    examples: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "encoder": {i: vars(s) for i, s in enumerate(self.encoder)},
            "decoder": {j + 1: vars(s) for j, s in enumerate(self.decoder)},
        }


def layer_inputs(inverter: Inverter) -> list[tuple[str, int]]:
    """(stage, layer) pairs this chain can reconstruct from, encoder layers first."""
    chain, config = inverter.chain, inverter.detr.config
    pairs = []
    if chain.encoder is not None and chain.backbone is not None:
        pairs += [("encoder", i) for i in range(config.encoder_layers + 1)]
        if chain.decoder is not None:
            pairs += [("decoder", j) for j in range(1, config.decoder_layers + 1)]
    if not pairs:
        raise AnalysisError("cross-layer analysis needs the inverse encoder and backbone")
    return pairs


@torch.no_grad()
def cross_layer_analysis(
    inverter: Inverter,
    subset: ImageSet,
    batch_size: int = 16,
    examples: int = 4,
    progress: bool = True,
) -> CrossLayerResult:
    """Scores of the reconstruction from every encoder and decoder layer."""
    pairs = layer_inputs(inverter)
    subset = subset.to(inverter.device)
    sums, shown = ScoreSums(), {"input": subset.images[:examples].cpu()}
    for batch in subset.chunks(batch_size, "cross-layer" if progress else ""):
        emb = embed(inverter, batch.images, batch.pixel_mask)
        for stage, layer in pairs:
            recon = inverter.chain.reconstruct(emb, stage, layer=layer)
            key = f"{stage} {layer}"
            sums.add(
                key, image_scores(recon, batch.images, batch.pixel_mask, inverter.transform.std)
            )
            shown.setdefault(key, recon[:examples].cpu())
    scores = {
        stage: [sums.means(f"{s} {i}") for s, i in pairs if s == stage]
        for stage in ("encoder", "decoder")
    }
    return CrossLayerResult(scores["encoder"], scores["decoder"], len(subset), shown)
