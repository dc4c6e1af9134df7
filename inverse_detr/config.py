"""Typed configuration: dataclass schemas, YAML groups, `key=value` overrides, validation.

`load_config(["experiment=coco", "data.batch_size=8"])` merges, in order:
1. the schema defaults below,
2. the group files chosen in `configs/train.yaml`'s `defaults`, then by the experiment's
   `defaults`, then by `group=name` arguments (`data=coco` reads `configs/data/coco.yaml`),
3. `configs/train.yaml`'s own values, then the experiment file's
   (`configs/experiment/NAME.yaml`),
4. dotlist overrides (`data.batch_size=8`).
`model=DIR_OR_HUB_ID` is short for `model.name=...` when no `configs/model/` file has that name.
Unknown keys and wrong types are one-line `ConfigError`s naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from inverse_detr.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]  # a checkout: configs/ and checkpoints/ live here
CONFIG_DIR = REPO_ROOT / "configs"
GROUPS = ("data", "model", "inverse", "trainer")
# `lambda` is a Python keyword, so the schema spells it `lam` / `lambdas`
ALIASES = {"joint.lambda": "joint.lam", "sweep.lambda": "sweep.lambdas"}
# analyze's own keys, short on its command line
ALIASES |= {"ckpt": "analysis.ckpt", "analyses": "analysis.analyses"}
# and invert_layout's
ALIASES |= {"layouts": "layout.layouts", "n": "layout.n"}

CACHE_ENV = "INVERSE_DETR_CACHE"


def default_cache_dir() -> str:
    """Where generated data lives unless `data.cache_dir` says: $INVERSE_DETR_CACHE, else
    ~/.cache/inverse_detr (the test suite points the variable at a temporary folder)."""
    return os.environ.get(CACHE_ENV) or "~/.cache/inverse_detr"


class ConfigError(UserError, ValueError):
    """A bad configuration; the message is one line naming the key or file."""


@dataclass
class RandomDetrConfig:
    """A DETR built with random weights, for runs without a trained detector."""

    backbone: str = "resnet10t"  # any timm ResNet
    dilation: bool = True  # output stride 16 instead of 32
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
    """The generated world and the truths it plants (see inverse_detr.data.shapes.rules)."""

    train: int = 2000
    val: int = 200
    size: int = 128
    classes: int = 6
    seed: int = 0
    colour: str = "prototype"  # prototype: class hues | off: every hue uniform (the control)
    context: bool = False  # co-occurrence rules (an anchor class brings a partner at one side)
    texture: bool = False  # class-specific textures on some classes
    scale: str = "narrow"  # narrow: the first version's sizes | spread: small/medium/large


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
    layers: int = 0  # inverse encoder/decoder layers; 0: as many as the DETR's
    heads: int = 0  # 0: as the DETR's
    ffn_dim: int = 0  # 0: as the DETR's
    head_hidden: list[int] = field(default_factory=lambda: [512, 256])
    head_soft: bool = False  # class code: one-hot argmax (reference) | softmax probabilities
    lr: StageLR = field(default_factory=StageLR)
    weight_decay: float = 0.0
    schedule: str = "none"  # none | cosine


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: str = "auto"  # auto | N | list as Lightning takes it
    strategy: str = "auto"  # auto | ddp | ...
    num_nodes: int = 1
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed
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
    on_nonfinite: str = "stop"  # a NaN/inf stage loss: stop (one-line error) | skip (count it)


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


@dataclass
class SweepConfig:
    lambdas: list[float] = field(default_factory=list)  # non-empty: one joint run per λ


@dataclass
class AnalysisConfig:
    """`python -m inverse_detr.analyze` and the analysis callbacks of training runs."""

    ckpt: str = "checkpoints/shapes-inverse"  # analyze: an export, or a run folder with export/
    analyses: list[str] = field(default_factory=lambda: list(ANALYSES))
    images: int = 64  # a seeded fixed subset of the val split (seed: the top-level seed)
    batch_size: int = 16
    filters: list[str] = field(default_factory=lambda: list(FILTERS))
    categories: list[int] = field(default_factory=list)  # colour: ids to recolour ([]: all)
    min_area: float = 0.3  # colour: objects whose mask covers ≥ this share of the image
    out: str = ""  # analyze's output folder; empty: <out_dir>/analysis-<ckpt folder name>
    every_n_epochs: int = 1  # training: run the analyses every N validation epochs (0: off)
    # training: which analyses, on how many val images (colour costs 7 forward passes per image)
    callback_analyses: list[str] = field(default_factory=lambda: ["stages", "cross_layer"])
    callback_images: int = 8


@dataclass
class LayoutConfig:
    """`python -m inverse_detr.invert_layout`: images a detector reads as given layouts."""

    layouts: str = "val"  # val: the val split of `data` (the shapes world by default) | a COCO JSON
    n: int = 16  # the first n layouts (images with objects, by image id); 0: all
    batch_size: int = 16  # layouts optimised at once, each with its own matching
    iterations: int = 1000
    loss: str = "both"  # both | class | box: the set-loss terms that drive the image
    lr: float = 1.0  # SGD on normalised pixels
    momentum: float = 0.9
    lr_step: int = 700  # × lr_gamma every lr_step iterations (0: constant)
    lr_gamma: float = 0.3
    blur_sigma: float = 5.0  # periodic Gaussian blur: start sigma (px; 0: off)
    blur_decay: float = 0.985  # × per blur
    blur_every: int = 5  # iterations between blurs (0: off)
    blur_floor: float = 0.5
    jitter: int = 4  # px: random shift of up to ± this per axis and iteration (0: off)
    tv_weight: float = 0.05  # total variation
    p_norm_weight: float = 1e-4
    p: float = 6.0
    init_std: float = 0.5  # starting noise, in normalised units
    detectors: list[str] = field(default_factory=list)  # more DETRs for the transfer matrix
    out: str = ""  # empty: <out_dir>/layout-<model folder name>
    report: bool = False  # also <detector>/report.png: target boxes over each image
    # single-query visualisation instead of layouts: query ≥ 0 picks the query to maximise
    query: int = -1
    categories: list[int] = field(default_factory=list)  # its categories ([]: every named one)
    seeds: int = 16  # images per category


ANALYSES = ("stages", "cross_layer", "color")
FILTERS = ("none", "red", "green", "blue", "shift120", "shift240", "gray")  # data/recolor.py
CHOICES = {
    "mode": ("inversion", "joint"),
    "data.kind": ("shapes", "coco"),
    "data.shapes.colour": ("prototype", "off"),  # data/shapes/rules.py COLOUR_RULES
    "data.shapes.scale": ("narrow", "spread"),  # data/shapes/rules.py SCALE_RULES
    "data.resize": ("fixed", "pad"),
    "data.on_bad_image": ("skip", "error"),
    "inverse.backbone_kind": ("conv", "linear"),
    "inverse.schedule": ("none", "cosine"),
    "trainer.on_nonfinite": ("stop", "skip"),
    "trainer.precision": ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true"),
    "logger": ("wandb", "csv", "none"),
    "layout.loss": ("both", "class", "box"),
}


@dataclass
class Config:
    seed: int = 0
    out_dir: str = "runs"
    run_name: str = ""  # empty: a timestamp
    mode: str = "inversion"  # inversion: frozen DETR | joint: λ fine-tuning
    resume: str = ""  # "last": this run_name's last.ckpt | a checkpoint path | "": start anew
    logger: str = "wandb"  # wandb (offline unless logged in or WANDB_MODE says) | csv | none
    wandb_project: str = "inverse_detr"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    inverse: InverseConfig = field(default_factory=InverseConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    joint: JointConfig = field(default_factory=JointConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)


def _schema_error(err: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError):
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.select(OmegaConf.structured(Config), parent) if parent else None
        allowed = ", ".join((node if node is not None else OmegaConf.structured(Config)).keys())
        return ConfigError(f"{source}: unknown config key '{key}'; allowed here: {allowed}")
    msg = str(err).splitlines()[0]
    return ConfigError(f"{source}: bad value for config key '{key}': {msg}")


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as err:
        raise _schema_error(err, source) from None


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # yaml's errors carry multi-line context
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: must hold a mapping of config keys")
    return loaded


def _split_defaults(cfg: DictConfig, path: Path) -> tuple[dict[str, str], DictConfig]:
    """Pop the `defaults: {group: name}` selection off a YAML file's values."""
    defaults = cfg.pop("defaults", None) or {}
    if not isinstance(defaults, (dict, DictConfig)) or any(k not in GROUPS for k in defaults):
        raise ConfigError(f"{path}: 'defaults' must map groups ({', '.join(GROUPS)}) to names")
    return {str(k): str(v) for k, v in defaults.items()}, cfg


def _parse_overrides(overrides: list[str], config_dir: Path):
    groups: dict[str, str] = {}
    experiment, dotlist = None, []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        if key == "experiment":
            experiment = value
        elif key == "model" and not (config_dir / "model" / f"{value}.yaml").is_file():
            dotlist.append(f"model.name={value}")
        elif key in GROUPS:
            groups[key] = value
        else:
            dotlist.append(f"{ALIASES.get(key, key)}={value}")
    return groups, experiment, dotlist


def load_config(
    overrides: list[str] | None = None,
    config_dir: Path = CONFIG_DIR,
    run_config: Path | None = None,
) -> DictConfig:
    """The validated config for `overrides` (a list of `key=value` strings).

    run_config: a run's saved config.yaml whose `data` section is merged after the YAML files,
    before the command line (analyze on a run folder).
    """
    groups_cli, experiment, dotlist = _parse_overrides(list(overrides or []), config_dir)
    base = config_dir / "train.yaml"
    groups, base_values = _split_defaults(_read_yaml(base), base)
    exp_values, exp_source = OmegaConf.create(), "experiment"
    if experiment:
        exp_path = config_dir / "experiment" / f"{experiment}.yaml"
        if not exp_path.is_file():
            names = sorted(p.stem for p in (config_dir / "experiment").glob("*.yaml"))
            raise ConfigError(f"unknown experiment '{experiment}'; available: {', '.join(names)}")
        exp_groups, exp_values = _split_defaults(_read_yaml(exp_path), exp_path)
        exp_source = str(exp_path)
        groups.update(exp_groups)
    groups.update(groups_cli)

    cfg = OmegaConf.structured(Config)
    for group, name in groups.items():
        path = config_dir / group / f"{name}.yaml"
        if not path.is_file():
            names = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
            raise ConfigError(f"unknown {group} '{name}'; available: {', '.join(names)}")
        cfg = _merge(cfg, {group: _read_yaml(path)}, str(path))
    cfg = _merge(cfg, base_values, str(base))
    cfg = _merge(cfg, exp_values, exp_source)
    if run_config is not None:
        cfg = _merge(cfg, {"data": _read_yaml(run_config).get("data", {})}, str(run_config))
    try:
        cli = OmegaConf.from_dotlist(dotlist)
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad override: {str(err).splitlines()[0]}") from None
    cfg = _merge(cfg, cli, "command line")
    validate(cfg)
    return cfg


def given_keys(overrides: list[str]) -> list[str]:
    """The keys `key=value` overrides set, aliases resolved; a group or an experiment chosen
    gives its name (`data=coco` → data, `ckpt=runs/x` → analysis.ckpt)."""
    return [ALIASES.get(key, key) for key in (item.partition("=")[0] for item in overrides)]


def validate(cfg: DictConfig) -> None:
    """Checks the schema's types cannot express: choices and ranges."""
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is {value!r}; allowed: {', '.join(allowed)}")
    if len(cfg.data.image_size) != 2 or min(cfg.data.image_size) < 16:
        raise ConfigError(
            f"config key 'data.image_size' must be [H, W] ≥ 16, got {list(cfg.data.image_size)}"
        )
    _check_list(cfg, "inverse.stages", ("backbone", "encoder", "decoder", "head"))
    _check_list(cfg, "analysis.analyses", ANALYSES)
    _check_list(cfg, "analysis.callback_analyses", ANALYSES)
    _check_filters(cfg)
    if not 0.0 <= cfg.analysis.min_area <= 1.0:
        raise ConfigError(
            f"config key 'analysis.min_area' must lie in [0, 1], got {cfg.analysis.min_area}"
        )
    if cfg.sweep.lambdas and cfg.mode != "joint":
        raise ConfigError("config key 'sweep.lambdas' needs mode=joint (e.g. experiment=joint)")
    for lam in [cfg.joint.lam, *cfg.sweep.lambdas]:
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"λ must lie in [0, 1] (joint.lam / sweep.lambdas), got {lam}")
    for key in ("data.batch_size", "layout.batch_size", "analysis.batch_size"):
        if OmegaConf.select(cfg, key) < 1:
            raise ConfigError(f"config key '{key}' must be ≥ 1, got {OmegaConf.select(cfg, key)}")
    _check_layout(cfg.layout)
    if cfg.trainer.checkpoint_every_n_steps < 0:
        raise ConfigError(
            "config key 'trainer.checkpoint_every_n_steps' must be ≥ 0 (0: off), got "
            f"{cfg.trainer.checkpoint_every_n_steps}"
        )


# layout.* keys with a lower bound: (bound, inclusive)
LAYOUT_BOUNDS = {
    "n": (0, True),
    "iterations": (1, True),
    "seeds": (1, True),
    "lr": (0.0, False),
    "momentum": (0.0, True),
    "lr_step": (0, True),
    "lr_gamma": (0.0, False),
    "blur_sigma": (0.0, True),
    "blur_decay": (0.0, False),
    "blur_every": (0, True),
    "blur_floor": (0.0, True),
    "jitter": (0, True),
    "tv_weight": (0.0, True),
    "p_norm_weight": (0.0, True),
    "p": (0.0, False),
    "init_std": (0.0, True),
}


def _check_layout(layout: DictConfig) -> None:
    for key, (bound, inclusive) in LAYOUT_BOUNDS.items():
        value = layout[key]
        if value < bound or (value == bound and not inclusive):
            relation = "≥" if inclusive else ">"
            raise ConfigError(f"config key 'layout.{key}' must be {relation} {bound}, got {value}")


def _check_list(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> None:
    """A non-empty list of allowed names."""
    values = list(OmegaConf.select(cfg, key))
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ConfigError(
            f"config key '{key}' has {bad or 'nothing'}; allowed: {', '.join(allowed)}"
        )


def _check_filters(cfg: DictConfig) -> None:
    """The colour analysis compares ≥ 2 distinct filters."""
    _check_list(cfg, "analysis.filters", FILTERS)
    filters = list(cfg.analysis.filters)
    if len(filters) < 2 or len(set(filters)) < len(filters):
        raise ConfigError(
            f"config key 'analysis.filters' is {filters}; the colour analysis compares ≥ 2 "
            f"distinct filters of: {', '.join(FILTERS)}"
        )


def save_config(cfg: DictConfig, path: Path) -> Path:
    """Write the resolved config as YAML (the record of what a run did)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path
