"""Config sections → objects: a helper of the entry points, the one place besides them that
reads the config tree. Everything it builds takes explicit typed arguments, so notebooks can
build the same objects without a config."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import DetrForObjectDetection

from inverse_detr.config import ConfigError
from inverse_detr.data.datamodule import DetectionDataModule, Split
from inverse_detr.data.shapes import SHAPE_CLASSES, ensure_shapes_world
from inverse_detr.data.transforms import DetrTransform
from inverse_detr.detr import (
    backbone_stride,
    detr_signature,
    freeze,
    image_normalization,
    load_detr,
    random_detr,
)
from inverse_detr.inverse.spec import ChainSpec
from inverse_detr.layout.optimize import InversionSettings
from inverse_detr.layout.regularizers import BlurSchedule
from inverse_detr.lit.inversion import InversionModule

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


def data_splits(data: DictConfig) -> tuple[Split, Split]:
    """(train, val) locations; the shapes world is generated on first use."""
    if data.kind == "shapes":
        try:
            world = ensure_shapes_world(
                Path(data.cache_dir).expanduser(),
                data.shapes.train,
                data.shapes.val,
                size=data.shapes.size,
                seed=data.shapes.seed,
                num_classes=data.shapes.classes,
            )
        except ValueError as err:  # the generator's own argument checks
            raise ConfigError(f"config section 'data.shapes': {err}") from None
        return Split(*world.split("train")), Split(*world.split("val"))
    if not data.root:
        raise ConfigError("data.kind=coco needs data.root: the folder holding the COCO images")
    root = Path(data.root).expanduser()
    return (
        Split(root / data.train_images, root / data.train_annotations),
        Split(root / data.val_images, root / data.val_annotations),
    )


def build_transform(data: DictConfig, model_name: str) -> DetrTransform:
    """Resize as configured, normalise with the DETR's own image-processor statistics."""
    mean, std = image_normalization(model_name) if model_name != "random" else (None, None)
    kwargs = {"mean": mean, "std": std} if mean else {}
    return DetrTransform(tuple(data.image_size), data.resize, **kwargs)


def build_datamodule(
    data: DictConfig, model_name: str, with_masks: bool = False
) -> DetectionDataModule:
    train, val = data_splits(data)
    return DetectionDataModule(
        train,
        val,
        build_transform(data, model_name),
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        pin_memory=data.pin_memory,
        on_bad_image=data.on_bad_image,
        max_train_images=data.max_train_images,
        max_val_images=data.max_val_images,
        with_masks=with_masks,
    )


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
        encoder_layers=inverse.layers or config.encoder_layers,
        encoder_heads=inverse.heads or config.encoder_attention_heads,
        encoder_ffn=inverse.ffn_dim or config.encoder_ffn_dim,
        decoder_layers=inverse.layers or config.decoder_layers,
        decoder_heads=inverse.heads or config.decoder_attention_heads,
        decoder_ffn=inverse.ffn_dim or config.decoder_ffn_dim,
        head_hidden=tuple(inverse.head_hidden),
        head_soft=inverse.head_soft,
    )


def build_inversion_module(
    cfg: DictConfig, detr: DetrForObjectDetection, spec: ChainSpec, compile: bool | None = None
) -> InversionModule:
    """The module `python -m inverse_detr.train` trains (the benchmark times the same one);
    compile: overrides `cfg.trainer.compile`."""
    mean, std = image_normalization(cfg.model.name)
    return InversionModule(
        detr,
        spec,
        mean,
        std,
        lr=dict(cfg.inverse.lr),
        weight_decay=cfg.inverse.weight_decay,
        schedule=cfg.inverse.schedule,
        compile=cfg.trainer.compile if compile is None else compile,
        on_nonfinite=cfg.trainer.on_nonfinite,
    )


def inversion_settings(layout: DictConfig, seed: int) -> InversionSettings:
    """The layout optimiser's settings from the config's `layout` section."""
    blur = BlurSchedule(layout.blur_sigma, layout.blur_decay, layout.blur_every, layout.blur_floor)
    return InversionSettings(
        iterations=layout.iterations,
        lr=layout.lr,
        momentum=layout.momentum,
        lr_step=layout.lr_step,
        lr_gamma=layout.lr_gamma,
        blur=blur,
        jitter=layout.jitter,
        tv_weight=layout.tv_weight,
        p_norm_weight=layout.p_norm_weight,
        p=layout.p,
        init_std=layout.init_std,
        terms=layout.loss,
        seed=seed,
    )
