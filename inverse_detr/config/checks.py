"""What the schema's types cannot express: choices and ranges, checked after every load."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from inverse_detr.config.schema import ANALYSES, FILTERS, ConfigError

# analyses outside the default set (schema's ANALYSES), run only when named:
# analyses=[grayscale,errors] (inverse_detr/analysis/suite.py EXTRA_ANALYSES)
EXTRA_ANALYSES = ("grayscale", "errors", "chains", "spectrum", "interiors")
# what training callbacks may run besides ANALYSES: chains needs other chains to compare with
CALLBACK_EXTRA_ANALYSES = ("grayscale", "errors", "spectrum", "interiors")

CHOICES = {
    "mode": ("inversion", "joint", "detection"),
    "detector.family": ("retinanet", "fcos", "faster_rcnn", "mask_rcnn"),  # detectors.classic
    "data.kind": ("shapes", "coco"),
    "data.shapes.colour": ("prototype", "off"),  # data/shapes/rules.py COLOUR_RULES
    "data.shapes.scale": ("narrow", "spread"),  # data/shapes/rules.py SCALE_RULES
    "data.resize": ("fixed", "pad"),
    "data.on_bad_image": ("skip", "error"),
    "data.augment": ("none", "hflip"),  # data/transforms.py AUGMENTATIONS
    "trainer.embedding_cache": ("auto", "off", "ram", "disk"),
    "trainer.embedding_cache_dtype": ("float32", "float16", "bfloat16"),  # inverse/cache.py
    "inverse.backbone_kind": ("conv", "linear"),
    "inverse.schedule": ("none", "cosine"),
    "inverse.objective": ("stagewise", "end_to_end"),  # inverse/losses.py OBJECTIVES
    "joint.keep": ("best_ap50", "last"),
    "trainer.on_nonfinite": ("stop", "skip"),
    # auto: bf16-mixed where it makes the step faster (lit/precision.py)
    "trainer.precision": ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true"),
    "logger": ("wandb", "csv", "none"),
    "attribution.method": ("gradcam", "occlusion", "both"),  # attribution/explain.py METHODS
}


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
    if cfg.inverse.objective == "end_to_end" and sorted(cfg.inverse.stages) != sorted(
        ("backbone", "encoder", "decoder")
    ):
        raise ConfigError(
            "config key 'inverse.objective=end_to_end' trains the chain from the decoder: "
            f"'inverse.stages' must be [backbone, encoder, decoder], got {list(cfg.inverse.stages)}"
        )
    _check_list(cfg, "analysis.analyses", (*ANALYSES, *EXTRA_ANALYSES))
    _check_list(cfg, "analysis.callback_analyses", (*ANALYSES, *CALLBACK_EXTRA_ANALYSES))
    if "chains" in cfg.analysis.analyses and not cfg.analysis.compare:
        raise ConfigError(
            "config key 'analysis.analyses' has chains: name the chains to compare with "
            "analysis.compare=[<export or run>, ...]"
        )
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
    if cfg.inverse.backbone_refine < 0:
        raise ConfigError(
            f"config key 'inverse.backbone_refine' must be ≥ 0, got {cfg.inverse.backbone_refine}"
        )
    if cfg.inverse.init_widen and not cfg.inverse.init:
        raise ConfigError("config key 'inverse.init_widen' needs inverse.init=<export or run>")
    for key in ("data.batch_size", "layout.batch_size", "analysis.batch_size"):
        if OmegaConf.select(cfg, key) < 1:
            raise ConfigError(f"config key '{key}' must be ≥ 1, got {OmegaConf.select(cfg, key)}")
    _check_layout(cfg.layout)
    _check_attribution(cfg.attribution)
    _check_random_detr(cfg.model.random)
    _check_embedding_cache(cfg)
    for key in ("checkpoint_every_n_steps", "keep_every_n_steps"):
        if cfg.trainer[key] < 0:
            raise ConfigError(
                f"config key 'trainer.{key}' must be ≥ 0 (0: off), got {cfg.trainer[key]}"
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


# the terms a detector's `inversion_losses` can give (detectors/interface.py)
LOSS_TERMS = ("cls", "reg", "mask")


def _check_layout(layout: DictConfig) -> None:
    terms = layout.loss.split("+")
    if layout.loss != "all" and (not set(terms) <= set(LOSS_TERMS) or len(set(terms)) < len(terms)):
        raise ConfigError(
            f"config key 'layout.loss' is {layout.loss!r}; allowed: all, or terms of "
            f"{', '.join(LOSS_TERMS)} joined by '+' (e.g. cls+reg)"
        )
    for key, (bound, inclusive) in LAYOUT_BOUNDS.items():
        value = layout[key]
        if value is None:  # the detector family's tuned value
            continue
        if value < bound or (value == bound and not inclusive):
            relation = "≥" if inclusive else ">"
            raise ConfigError(f"config key 'layout.{key}' must be {relation} {bound}, got {value}")


# attribution.* keys with a range: (low, low inclusive, high or None)
ATTRIBUTION_BOUNDS = {
    "n": (1, True, None),
    "min_score": (0.0, True, 1.0),
    "margin": (0, True, None),
    "window": (1, True, None),
    "stride": (1, True, None),
    "band": (0.0, False, None),
    "top": (0.0, False, 1.0),
    "figures": (0, True, None),
}


def _check_attribution(attribution: DictConfig) -> None:
    for key, (low, inclusive, high) in ATTRIBUTION_BOUNDS.items():
        value = attribution[key]
        if value < low or (value == low and not inclusive) or (high is not None and value > high):
            wanted = f"{'≥' if inclusive else '>'} {low}" + (f" and ≤ {high}" if high else "")
            raise ConfigError(f"config key 'attribution.{key}' must be {wanted}, got {value}")


def _check_embedding_cache(cfg: DictConfig) -> None:
    """An explicit cache needs frozen targets and the same input every epoch."""
    mode = cfg.trainer.embedding_cache
    if mode in ("ram", "disk") and cfg.mode != "inversion":
        raise ConfigError(
            f"trainer.embedding_cache={mode} needs mode=inversion (a frozen DETR); in "
            f"mode={cfg.mode} the detector's outputs change every step: use off"
        )
    if mode in ("ram", "disk") and cfg.data.augment != "none":
        raise ConfigError(
            f"trainer.embedding_cache={mode} needs a deterministic input pipeline, but "
            f"data.augment={cfg.data.augment} changes the images at random: use off or "
            "data.augment=none"
        )
    if cfg.trainer.embedding_cache_ram_gb < 0:
        raise ConfigError(
            "config key 'trainer.embedding_cache_ram_gb' must be ≥ 0, got "
            f"{cfg.trainer.embedding_cache_ram_gb}"
        )


def _check_random_detr(random: DictConfig) -> None:
    if random.backbone_stages < 0 or (random.backbone_stages and random.dilation):
        raise ConfigError(
            f"config key 'model.random.backbone_stages' is {random.backbone_stages}; give 0 (all "
            "stages) or N ≥ 1 with model.random.dilation=false (a shortened backbone has no "
            "last stage to dilate)"
        )


def _check_list(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> None:
    """A non-empty list of allowed names."""
    values = list(OmegaConf.select(cfg, key))
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ConfigError(
            f"config key '{key}' has {bad or 'nothing'}; allowed: {', '.join(allowed)}"
        )


def _check_filters(cfg: DictConfig) -> None:
    """The colour analysis, when it will run (in `analyze` or in training's callback), compares
    ≥ 2 distinct filters."""
    _check_list(cfg, "analysis.filters", FILTERS)
    a = cfg.analysis
    colour = "color" in a.analyses or ("color" in a.callback_analyses and a.every_n_epochs > 0)
    filters = list(a.filters)
    if (colour and len(filters) < 2) or len(set(filters)) < len(filters):
        raise ConfigError(
            f"config key 'analysis.filters' is {filters}; the colour analysis compares ≥ 2 "
            f"distinct filters of: {', '.join(FILTERS)}"
        )
