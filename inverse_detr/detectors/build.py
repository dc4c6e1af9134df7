"""Config sections → a DETR, its input transform and the inverse chain sized for it.

Everything built here takes explicit typed arguments underneath, so notebooks can build the same
objects without a config.
"""

from __future__ import annotations

import logging
import math

import torch
from omegaconf import DictConfig
from transformers import DetrForObjectDetection

from inverse_detr.config import ConfigError
from inverse_detr.data.shapes import SHAPE_CLASSES
from inverse_detr.data.transforms import DetrTransform
from inverse_detr.detectors.detr import (
    backbone_stride,
    detr_signature,
    freeze,
    image_normalization,
    load_detr,
    random_detr,
)
from inverse_detr.inverse.spec import ChainSpec

log = logging.getLogger(__name__)


def build_detr(model: DictConfig, seed: int, frozen: bool = True) -> DetrForObjectDetection:
    """The DETR named by `model.name`, or a seeded random one for `model.name=random`."""
    if model.name != "random":
        return load_detr(model.name, frozen=frozen)
    spec = model.random
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        detr = random_detr(
            backbone=spec.backbone,
            dilation=spec.dilation,
            backbone_stages=spec.backbone_stages,
            d_model=spec.d_model,
            encoder_layers=spec.encoder_layers,
            decoder_layers=spec.decoder_layers,
            attention_heads=spec.attention_heads,
            ffn_dim=spec.ffn_dim,
            num_queries=spec.num_queries,
            num_labels=spec.num_labels,
            id2label=_shapes_labels(spec.num_labels),
        )
    log.info(
        "built a random DETR (%s, d=%d): no trained detector given", spec.backbone, spec.d_model
    )
    return freeze(detr) if frozen else detr


def _shapes_labels(num_labels: int) -> dict[int, str]:
    names = {i + 1: c.name for i, c in enumerate(SHAPE_CLASSES)}
    return {i: names.get(i, f"class_{i}") for i in range(num_labels)}


def build_transform(data: DictConfig, model_name: str) -> DetrTransform:
    """Resize as configured, normalise with the DETR's own image-processor statistics."""
    mean, std = image_normalization(model_name) if model_name != "random" else (None, None)
    kwargs = {"mean": mean, "std": std} if mean else {}
    return DetrTransform(tuple(data.image_size), data.resize, **kwargs)


def chain_spec(inverse: DictConfig, detr: DetrForObjectDetection) -> ChainSpec:
    """The inverse chain for `detr`: its dimensions, the configured sizes (0 = as the DETR)."""
    config = detr.config
    stride = backbone_stride(detr)
    if inverse.backbone_kind == "conv" and inverse.backbone_up:
        needed = round(math.log2(stride))
        if len(inverse.backbone_up) != needed:
            raise ConfigError(
                f"inverse.backbone_up has {len(inverse.backbone_up)} widths, but the DETR's "
                f"stride {stride} needs {needed} (or [] for the reference widths)"
            )
    heads = inverse.heads or config.encoder_attention_heads
    if config.d_model % heads:
        raise ConfigError(
            f"inverse.heads={heads} does not divide the DETR's d_model {config.d_model}"
        )
    return ChainSpec(
        **detr_signature(detr),
        stages=tuple(inverse.stages),
        backbone_kind=inverse.backbone_kind,
        backbone_hidden=tuple(inverse.backbone_hidden),
        backbone_up=tuple(inverse.backbone_up),
        backbone_linear_width=inverse.backbone_linear_width,
        backbone_refine=inverse.backbone_refine,
        encoder_layers=inverse.layers or config.encoder_layers,
        encoder_heads=inverse.heads or config.encoder_attention_heads,
        encoder_ffn=inverse.ffn_dim or config.encoder_ffn_dim,
        decoder_layers=inverse.layers or config.decoder_layers,
        decoder_heads=inverse.heads or config.decoder_attention_heads,
        decoder_ffn=inverse.ffn_dim or config.decoder_ffn_dim,
        head_hidden=tuple(inverse.head_hidden),
        head_soft=inverse.head_soft,
    )
