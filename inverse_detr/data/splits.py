"""Where the train and val splits live; the shapes world is generated on first use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from inverse_detr.config import ConfigError
from inverse_detr.data.shapes import Rules, ensure_shapes_world


@dataclass(frozen=True)
class Split:
    """Where one split lives: its image folder and COCO instances file."""

    images: Path
    annotations: Path


def shapes_rules(shapes: DictConfig) -> Rules:
    """The planted rules the config's `data.shapes` section asks for."""
    return Rules(
        colour=shapes.colour, context=shapes.context, texture=shapes.texture, scale=shapes.scale
    )


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
                rules=shapes_rules(data.shapes),
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
