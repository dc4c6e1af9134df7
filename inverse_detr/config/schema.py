"""The config schema: typed dataclasses with their defaults, where the repository and the cache
are, and the one-line error every config problem raises."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from inverse_detr.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]  # a checkout: configs/ and checkpoints/ live here
CONFIG_DIR = REPO_ROOT / "configs"

CACHE_ENV = "INVERSE_DETR_CACHE"


def default_cache_dir() -> str:
    """Where generated data lives unless `data.cache_dir` says: $INVERSE_DETR_CACHE, else
    ~/.cache/inverse_detr (the test suite points the variable at a temporary folder)."""
    return os.environ.get(CACHE_ENV) or "~/.cache/inverse_detr"


ANALYSES = ("stages", "cross_layer", "color")
FILTERS = ("none", "red", "green", "blue", "shift120", "shift240", "gray")  # data/recolor.py


class ConfigError(UserError, ValueError):
    """A bad configuration; the message is one line naming the key or file."""


@dataclass
class RandomDetrConfig:
    """A DETR built with random weights, for runs without a trained detector."""

    backbone: str = "resnet10t"  # any timm ResNet
    dilation: bool = True  # output stride 16 instead of 32
    # timm stages kept (0: all). Fewer stop the backbone early: resnet10t's first 3 give
    # stride 16 with a quarter of the weights (no last stage to dilate; set dilation=false)
    backbone_stages: int = 0
    d_model: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 2
    attention_heads: int = 8
    ffn_dim: int = 512
    num_queries: int = 12
    num_labels: int = 7  # class ids 0..6: the shapes world's 1..6 (COCO-style ids)


@dataclass
class ModelConfig:
    name: str = "random"  # hub id, save_pretrained directory, or "random" (built from `random`)
    random: RandomDetrConfig = field(default_factory=RandomDetrConfig)


@dataclass
class ShapesConfig:
    """The generated world and the truths it plants (see inverse_detr.data.shapes.rules); the
    defaults plant every truth (`data=shapes_first` is the first version's world)."""

    train: int = 2000
    val: int = 200
    size: int = 128
    classes: int = 6
    seed: int = 0
    colour: str = "prototype"  # prototype: class hues | off: every hue uniform (the control)
    context: bool = True  # co-occurrence rules (an anchor class brings a partner at one side)
    texture: bool = True  # class-specific textures on some classes
    scale: str = "spread"  # spread: small/medium/large | narrow: the first version's sizes


@dataclass
class DataConfig:
    kind: str = "shapes"  # shapes | coco
    root: str = ""  # coco: dataset root holding the image folders and annotations/
    train_images: str = "train2017"
    train_annotations: str = "annotations/instances_train2017.json"
    val_images: str = "val2017"
    val_annotations: str = "annotations/instances_val2017.json"
    cache_dir: str = field(default_factory=default_cache_dir)  # where the shapes world lives
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    image_size: list[int] = field(default_factory=lambda: [128, 128])  # (H, W)
    resize: str = "fixed"  # fixed: stretch to image_size | pad: keep aspect, pad, pixel mask
    batch_size: int = 16
    num_workers: int = 2
    pin_memory: bool = True
    on_bad_image: str = "skip"  # skip (warn + count) | error
    augment: str = "none"  # none | hflip: flip training images left-right at random (p = 0.5)
    max_train_images: int = 0  # 0: all
    max_val_images: int = 0


@dataclass
class StageLR:
    """Adam learning rates per inverse stage (the reference code's defaults)."""

    backbone: float = 3e-3
    encoder: float = 1e-3
    decoder: float = 1e-4
    head: float = 3e-3


@dataclass
class InverseConfig:
    stages: list[str] = field(default_factory=lambda: ["backbone", "encoder", "decoder", "head"])
    backbone_kind: str = "conv"  # conv: the paper's ConvT stack | linear: the light variant
    backbone_hidden: list[int] = field(default_factory=lambda: [2048, 1792, 1536])
    backbone_up: list[int] = field(default_factory=list)  # empty: reference widths for the stride
    backbone_linear_width: int = 256
    backbone_refine: int = 0  # conv: extra 3×3 layers after each upsampling; 0: the paper's stack
    layers: int = 0  # inverse encoder/decoder layers; 0: as many as the DETR's
    heads: int = 0  # 0: as the DETR's
    ffn_dim: int = 0  # 0: as the DETR's
    head_hidden: list[int] = field(default_factory=lambda: [512, 256])
    head_soft: bool = False  # class code: one-hot argmax (reference) | softmax probabilities
    lr: StageLR = field(default_factory=StageLR)
    weight_decay: float = 0.0
    schedule: str = "none"  # none | cosine
    # stagewise: each module against its stage's true input | end_to_end: the chain
    # decoder → encoder → backbone by one image loss (stages must be those three)
    objective: str = "stagewise"
    # an export or run folder: start from its trained modules (their sizes; the backbone_*,
    # layers, heads, ffn_dim, head_* keys are not read but for init_widen), e.g. a second
    # schedule after a first
    init: str = ""
    # with init: widen its conv inverse backbone to backbone_hidden/backbone_up (same depth, no
    # layer narrower) keeping the images it makes (inverse/widen.py), then train on
    init_widen: bool = False


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: str = "auto"  # auto | N | list as Lightning takes it
    strategy: str = "auto"  # auto | ddp | ...
    num_nodes: int = 1
    precision: str = "32-true"  # auto (measured, lit/precision.py) | 32-true | bf16-mixed | ...
    compile: bool = False  # torch.compile the inverse modules
    max_epochs: int = 10
    max_steps: int = -1
    max_time: str = ""  # e.g. 00:08:00 (DD:HH:MM:SS or HH:MM:SS); empty: no limit
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    val_check_interval: float = 1.0
    log_every_n_steps: int = 20
    gradient_clip_val: float = 0.0
    fast_dev_run: bool = False
    checkpoint_every_n_steps: int = 500  # also write last.ckpt every N optimiser steps; 0: off
    keep_every_n_steps: int = 0  # keep the weights every N steps as step-<N>.ckpt (`average`)
    on_nonfinite: str = "stop"  # a NaN/inf stage loss: stop (one-line error) | skip (count it)
    # mode=inversion: keep the frozen DETR's targets per image after their first forward pass
    # and reuse them every later epoch (README "Speed"). auto: on for runs of > 1 epoch on a
    # deterministic pipeline, in RAM when it fits embedding_cache_ram_gb, else on disk
    embedding_cache: str = "auto"  # auto | off | ram | disk
    embedding_cache_dir: str = ""  # disk: its folder (empty: <run folder>/embedding_cache)
    embedding_cache_ram_gb: float = 4.0  # auto: the RAM a cache may take (per process)
    embedding_cache_dtype: str = "float32"  # float32 (exact) | float16 | bfloat16 storage


@dataclass
class JointConfig:
    """Joint fine-tuning (mode=joint): loss lam·L_rec + (1 − lam)·L_det."""

    lam: float = 0.5  # λ; `joint.lambda=...` on the command line works too
    lr_backbone: float = 1e-5  # the reference fine-tuning rate
    lr_transformer: float = 1e-5
    lr_inverse: float = 1e-4
    weight_decay: float = 1e-4
    init_inverse: str = ""  # an export or run folder to start the inverse chain from
    from_scratch: bool = False  # random DETR: trainable BatchNorm + DETR's init
    backbone_bf16: bool = False  # CNN backbone in bf16 autocast + channels_last
    # which weights the run exports: the epoch of the best val/ap50, or the last epoch (a λ
    # sweep reads where AP and MSE settled, not the least-changed epoch of a high λ)
    keep: str = "best_ap50"


@dataclass
class DetectorConfig:
    """mode=detection: a classic detector (inverse_detr.detectors.classic) trained from scratch."""

    family: str = "retinanet"  # retinanet | fcos | faster_rcnn | mask_rcnn
    backbone: str = "resnet10t"  # any timm CNN with features_only
    out_indices: list[int] = field(default_factory=lambda: [1, 2, 3])  # strides 4, 8, 16
    fpn_channels: int = 64
    lr: float = 1e-3  # AdamW
    weight_decay: float = 0.05
    warmup_steps: int = 200  # linear warm-up, then cosine to 0 over the run


@dataclass
class SweepConfig:
    lambdas: list[float] = field(default_factory=list)  # non-empty: one joint run per λ


@dataclass
class AnalysisConfig:
    """`python -m inverse_detr.analyze` and the analysis callbacks of training runs."""

    ckpt: str = "checkpoints/shapes-inverse"  # analyze: an export, or a run folder with export/
    # default: ANALYSES; the rest run when named (config/checks.py EXTRA_ANALYSES)
    analyses: list[str] = field(default_factory=lambda: list(ANALYSES))
    images: int = 64  # a seeded fixed subset of the val split (seed: the top-level seed)
    batch_size: int = 16
    filters: list[str] = field(default_factory=lambda: list(FILTERS))
    categories: list[int] = field(default_factory=list)  # colour: ids to recolour ([]: all)
    min_area: float = 0.3  # colour: objects whose mask covers ≥ this share of the image
    out: str = ""  # analyze's output folder; empty: <out_dir>/analysis-<ckpt folder name>
    # chains: the other exports (or run folders) compared with `ckpt` on the same images
    compare: list[str] = field(default_factory=list)
    every_n_epochs: int = 1  # training: run the analyses every N validation epochs (0: off)
    # training: which analyses, on how many val images (colour costs 7 forward passes per image)
    callback_analyses: list[str] = field(default_factory=lambda: ["stages", "cross_layer"])
    callback_images: int = 8


@dataclass
class LayoutConfig:
    """`python -m inverse_detr.invert_layout`: images a detector reads as given layouts."""

    layouts: str = "val"  # val: the val split of `data` (the shapes world by default) | a COCO JSON
    n: int = 16  # the first n layouts (images with objects, by image id); 0: all
    batch_size: int = 16  # layouts optimised at once, each with its own Z-step
    # all | cls | reg | cls+reg | mask: the inversion_losses terms that drive the image
    loss: str = "all"
    # The optimiser and its regularisers. null: the tuned value of the inverting detector's
    # family (inverse_detr.layout.settings.TUNED); a value here applies to every detector.
    iterations: int | None = None
    lr: float | None = None  # SGD on normalised pixels
    momentum: float | None = None
    lr_step: int | None = None  # × lr_gamma every lr_step iterations (0: constant)
    lr_gamma: float | None = None
    blur_sigma: float | None = None  # periodic Gaussian blur: start sigma (px; 0: off)
    blur_decay: float | None = None  # × per blur
    blur_every: int | None = None  # iterations between blurs (0: off)
    blur_floor: float | None = None
    jitter: int | None = None  # px: random shift of up to ± this per axis and iteration (0: off)
    tv_weight: float | None = None  # total variation
    p_norm_weight: float | None = None
    p: float | None = None
    init_std: float | None = None  # starting noise, in normalised units
    # more detectors for the transfer matrix: any (DETR dirs or hub ids, project detector dirs)
    detectors: list[str] = field(default_factory=list)
    out: str = ""  # empty: <out_dir>/layout-<model folder name>
    report: bool = False  # also <detector>/report.png: target boxes over each image
    # single-candidate visualisation instead of layouts: candidate ≥ 0 picks the candidate to
    # maximise (a DETR's query, an anchor / point index), or level = L | all the candidate at
    # the canvas centre of pyramid level L, or of every level (the scale study)
    candidate: int = -1
    level: str = ""
    categories: list[int] = field(default_factory=list)  # its categories ([]: every named one)
    # masked texture removal on the first n val images instead, with every detector
    texture: bool = False
    seeds: int = 16  # images per category


@dataclass
class AttributionConfig:
    """`python -m inverse_detr.attribute`: where a detection's class and box evidence lies."""

    n: int = 16  # detections explained: confident ones matched to a val object, by image id
    method: str = "both"  # gradcam | occlusion | both
    min_score: float = 0.5  # detections scoring below are not explained
    # Grad-CAM's layer, a module name in the detector ("": its backbone's last stage, e.g.
    # backbone.body.layer3; inverse_detr.attribution.targets.default_layer)
    layer: str = ""
    restrict: bool = True  # zero the maps outside the detection's box grown by `margin` px
    margin: int = 0
    window: int = 8  # occlusion: the square patch's side, px
    stride: int = 4  # occlusion: its step, px
    band: float = 3.0  # px: the boundary band reaches this far on both sides of the mask edge
    top: float = 0.2  # the share of the box's pixels whose top regions the class/box IoU compares
    figures: int = 12  # detection figures embedded in report.html (figures/ holds them all)
    out: str = ""  # empty: <out_dir>/attribution-<model folder name>


@dataclass
class Config:
    seed: int = 0
    out_dir: str = "runs"
    run_name: str = ""  # empty: a timestamp
    mode: str = "inversion"  # inversion: frozen DETR | joint: λ fine-tuning | detection
    resume: str = ""  # "last": this run_name's last.ckpt | a checkpoint path | "": start anew
    logger: str = "wandb"  # wandb (offline unless logged in or WANDB_MODE says) | csv | none
    wandb_project: str = "inverse_detr"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    inverse: InverseConfig = field(default_factory=InverseConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    joint: JointConfig = field(default_factory=JointConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
