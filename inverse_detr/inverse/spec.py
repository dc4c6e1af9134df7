"""The architecture of an inverse chain as plain data: JSON in exports, rebuilt without pickle."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from inverse_detr.inverse.backbone import InverseBackbone
from inverse_detr.inverse.chain import STAGES, InverseChain
from inverse_detr.inverse.decoder import InverseDecoder
from inverse_detr.inverse.encoder import InverseEncoder
from inverse_detr.inverse.head import InverseHead

# the reference code's up-sampling widths for stride 32; smaller strides use the last ones
REFERENCE_UP = (1024, 512, 256, 128, 64)


def reference_up(stride: int) -> tuple[int, ...]:
    """The reference widths for log2(stride) up-sampling layers (stride 16 → the last 4)."""
    count = round(math.log2(stride))
    if count > len(REFERENCE_UP):
        return (REFERENCE_UP[0],) * (count - len(REFERENCE_UP)) + REFERENCE_UP
    return REFERENCE_UP[len(REFERENCE_UP) - count :]


@dataclass(frozen=True)
class ChainSpec:
    """Everything needed to rebuild an `InverseChain`; the DETR fixes the first four fields.

    d_model, stride, num_queries, num_labels_plus_one: of the DETR inverted.
    stages: which inverse modules exist.
    """

    d_model: int
    stride: int
    num_queries: int
    num_labels_plus_one: int
    stages: tuple[str, ...] = STAGES
    backbone_kind: str = "conv"
    backbone_hidden: tuple[int, ...] = (2048, 1792, 1536)
    backbone_up: tuple[int, ...] = ()  # empty: reference_up(stride)
    backbone_linear_width: int = 256
    backbone_refine: int = 0  # extra 3×3 layers after each upsampling (0: the paper's stack)
    encoder_layers: int = 6
    encoder_heads: int = 8
    encoder_ffn: int = 2048
    decoder_layers: int = 6
    decoder_heads: int = 8
    decoder_ffn: int = 2048
    head_hidden: tuple[int, ...] = (512, 256)
    head_soft: bool = False
    extra: dict = field(default_factory=dict)  # free-form notes, e.g. the trainer's settings

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ValueError(f"stages must be a non-empty subset of {STAGES}, got {self.stages}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ChainSpec:
        """Rebuild from `to_json()` output; unknown keys are an error naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown inverse-chain fields {unknown}; expected {sorted(names)}")
        tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
        return cls(**{**data, **tuples})


def build_chain(spec: ChainSpec) -> InverseChain:
    """A fresh (randomly initialised) chain with the modules `spec.stages` names."""
    modules = {
        "backbone": lambda: InverseBackbone(
            spec.d_model,
            spec.stride,
            spec.backbone_kind,
            spec.backbone_hidden,
            spec.backbone_up or reference_up(spec.stride),
            spec.backbone_linear_width,
            spec.backbone_refine,
        ),
        "encoder": lambda: InverseEncoder(
            spec.d_model, spec.encoder_heads, spec.encoder_layers, spec.encoder_ffn
        ),
        "decoder": lambda: InverseDecoder(
            spec.d_model,
            spec.decoder_heads,
            spec.decoder_layers,
            spec.decoder_ffn,
            spec.num_queries,
        ),
        "head": lambda: InverseHead(
            spec.num_labels_plus_one, 4, spec.d_model, spec.head_hidden, spec.head_soft
        ),
    }
    return InverseChain(**{name: modules[name]() for name in spec.stages})
