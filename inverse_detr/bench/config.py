"""What the benchmark runs: the named configs and its own `key=value` arguments."""

from __future__ import annotations

from dataclasses import dataclass

from inverse_detr.bench.report import Variant
from inverse_detr.config import REPO_ROOT, ConfigError

COCO128 = REPO_ROOT.parent / "shared" / "data" / "coco128"


@dataclass(frozen=True)
class BenchConfig:
    """A named benchmark: training-config overrides and how many calls to time."""

    overrides: tuple[str, ...]
    warmup: int
    repeats: int


TINY = BenchConfig(
    (
        "model.name=random",
        "model.random.d_model=32",
        "model.random.encoder_layers=1",
        "model.random.decoder_layers=1",
        "model.random.attention_heads=2",
        "model.random.ffn_dim=64",
        "model.random.num_queries=5",
        "data.shapes.train=32",
        "data.shapes.val=8",
        "data.shapes.size=64",
        "data.image_size=[64,64]",
        "data.batch_size=4",
        "inverse.backbone_hidden=[16]",
        "inverse.backbone_up=[16,8,8,8]",
        "inverse.head_hidden=[32]",
    ),
    warmup=1,
    repeats=3,
)
# DETR-R50's dimensions with random weights (no hub here), the reference inverse modules,
# 480×640 as the reference code; real COCO images when the coco128 sample is at hand
R50 = (
    "experiment=coco",
    "model.name=random",
    "model.random.backbone=resnet50",
    "model.random.dilation=false",
    "model.random.d_model=256",
    "model.random.encoder_layers=6",
    "model.random.decoder_layers=6",
    "model.random.attention_heads=8",
    "model.random.ffn_dim=2048",
    "model.random.num_queries=100",
    "model.random.num_labels=91",
    "data.batch_size=2",
)
COCO128_DATA = (
    f"data.root={COCO128}",
    "data.val_images=train2017",
    "data.val_annotations=annotations/instances_train2017.json",
)
SHAPES_480 = ("data=shapes", "data.image_size=[480,640]")


def bench_config(name: str) -> BenchConfig:
    if name == "tiny":
        return TINY
    if name == "coco_r50":
        data = COCO128_DATA if (COCO128 / "train2017").is_dir() else SHAPES_480
        return BenchConfig((*R50, *data), warmup=1, repeats=3)
    if name == "layout":  # layout inversion with the configured detector (bench/layout.py)
        return BenchConfig((), warmup=1, repeats=3)
    raise ConfigError(f"unknown bench config '{name}'; available: tiny, coco_r50, layout")


DEFAULT_VARIANTS = ("fp32", "channels_last", "bf16", "bf16+channels_last", "compile+channels_last")


@dataclass(frozen=True)
class Settings:
    """The benchmark's own arguments (the rest are training-config overrides)."""

    config: str = "tiny"
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    explicit_variants: bool = False
    warmup: int | None = None  # None: the config's
    repeats: int | None = None
    device: str = "auto"
    out: str = ""  # empty: runs/bench/<config>-<device>.json
    gpu_peak_tflops: float = 0.0  # bf16 TFLOP/s to compare against; 0: the measured rate
    roofline: bool = True  # measure the matmul roofline at the start (≤ ~10 s)
    threads: int = 0  # torch CPU threads; 0: torch's default


def parse_args(argv: list[str]) -> tuple[Settings, list[str]]:
    """Split `key=value` arguments into the benchmark's settings and config overrides."""
    values: dict[str, object] = {}
    overrides = []
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"argument {item!r} is not of the form key=value")
        if key == "variants":
            names = tuple(v.strip() for v in value.strip("[]").split(",") if v.strip())
            for name in names:
                Variant.parse(name)  # a bad name fails before anything runs
            values.update(variants=names, explicit_variants=True)
        elif key in ("warmup", "repeats", "threads"):
            values[key] = _count(key, value)
        elif key == "gpu_peak_tflops":
            values[key] = _number(key, value)
        elif key == "roofline":
            values[key] = _flag(key, value)
        elif key in ("config", "device", "out"):
            values[key] = value
        else:
            overrides.append(item)
    settings = Settings(**values)
    if settings.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={settings.device}: allowed: auto, cpu, cuda")
    return settings, overrides


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{key}={value}: must be a number") from None


def _flag(key: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"{key}={value}: must be true or false")
    return value.lower() == "true"


def _count(key: str, value: str) -> int:
    if not value.isdigit() or (key == "repeats" and int(value) < 1):
        raise ConfigError(f"{key}={value}: must be a whole number ({key} ≥ 1)")
    return int(value)
