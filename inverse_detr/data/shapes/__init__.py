"""The shapes world: a generated COCO-format detection dataset where the truth is planted.

K shape classes; each image holds 1–4 filled shapes (plus context partners) on a smooth,
textured, muted background; later shapes occlude earlier ones and each annotation describes
only the visible part. Which truths are planted is `Rules` (`rules.py`): prototype colours,
context, class textures, a spread of sizes. Everything derives from ``(seed, split, index)`` and
the rules, so the same arguments give byte-identical files regardless of worker processes.

Modules: `classes` (the categories and their outlines), `rules` (the truths and how they are
recorded), `render` (one image), `world` (files and the cache), `stats` (the truths measured back
from the annotations), `__main__` (the command line).
"""

from inverse_detr.data.shapes.classes import MIN_CLASSES, SHAPE_CLASSES, ShapeClass, hsv_to_rgb
from inverse_detr.data.shapes.render import RenderedImage, RenderedObject, render_image
from inverse_detr.data.shapes.rules import PLANTED, Rules
from inverse_detr.data.shapes.world import ShapesPaths, ensure_shapes_world, generate_shapes

__all__ = [
    "MIN_CLASSES",
    "PLANTED",
    "SHAPE_CLASSES",
    "RenderedImage",
    "RenderedObject",
    "Rules",
    "ShapeClass",
    "ShapesPaths",
    "ensure_shapes_world",
    "generate_shapes",
    "hsv_to_rgb",
    "render_image",
]
