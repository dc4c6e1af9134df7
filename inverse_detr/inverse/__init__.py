"""Inverse modules: each reproduces one DETR stage's input from its output (pure torch).

Never imports transformers or Lightning.
"""

from inverse_detr.inverse.backbone import KINDS as BACKBONE_KINDS
from inverse_detr.inverse.backbone import InverseBackbone
from inverse_detr.inverse.chain import REQUIRED_MODULES, STAGES, InverseChain
from inverse_detr.inverse.decoder import InverseDecoder
from inverse_detr.inverse.encoder import InverseEncoder
from inverse_detr.inverse.head import InverseHead

__all__ = [
    "BACKBONE_KINDS",
    "REQUIRED_MODULES",
    "STAGES",
    "InverseBackbone",
    "InverseChain",
    "InverseDecoder",
    "InverseEncoder",
    "InverseHead",
]
