"""Rendering one image of the shapes world: background, placed shapes, colours, textures, and the
visible part of each object. Everything derives from `(seed, split, index)` and the rules; with
the first version's rules (`Rules()`) the random draws, and so the pixels, are those of the
first version."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from inverse_detr.data.shapes.classes import (
    AREA_AT_UNIT_RADIUS,
    CLASS_IDS,
    OUTER_RADIUS,
    OUTLINES,
    SHAPE_CLASSES,
    ShapeClass,
    hsv_to_rgb,
)
from inverse_detr.data.shapes.rules import (
    HUE_JITTER,
    PROTOTYPE_PROBABILITY,
    SPREAD_AREAS,
    Rules,
    active_context_rules,
    texture_of,
)

SPLITS = ("train", "val")
MAX_OBJECTS = 4  # drawn per image; a context rule may add a partner to each anchor
SIZE_FRACTION = (0.15, 0.45)  # scale=narrow: circumscribed diameter / side, log-uniform
VIVID_RANGE = (0.55, 1.0)  # saturation and value of objects: vivid enough for hue to be measurable
MIN_VISIBLE_FRACTION = 0.25
MIN_VISIBLE_PIXELS_128 = 30  # at 128 px; scaled with image area
TEXTURE_PERIOD_128 = 6.0  # pattern period in pixels at 128 px
TEXTURE_DARK = 0.5  # value multiplier of a pattern's dark part (the hue is kept)

Polygons = list[tuple[np.ndarray, int]]  # (vertices (N, 2) pixel xy, fill) in drawing order


@dataclass(frozen=True)
class RenderedObject:
    """One annotated object. ``mask: (H, W) bool`` visible pixels; ``full_area``: unoccluded px;
    ``hue``: the hue it was drawn in (degrees); ``texture``: its pattern or None."""

    category_id: int
    mask: np.ndarray
    full_area: int
    hue: float = 0.0
    texture: str | None = None


@dataclass(frozen=True)
class RenderedImage:
    """``image: (H, W, 3) uint8`` RGB; ``objects`` in drawing order (last one on top)."""

    image: np.ndarray
    objects: list[RenderedObject]


def _draw_radius(rng: np.random.Generator, shape: ShapeClass, size: int, scale: str) -> float:
    """The outline's scale in pixels (unit-disc outlines times this)."""
    if scale == "narrow":
        low, high = np.log(SIZE_FRACTION[0]), np.log(SIZE_FRACTION[1])
        return 0.5 * size * np.exp(rng.uniform(low, high))
    low, high = list(SPREAD_AREAS.values())[rng.integers(len(SPREAD_AREAS))]
    area = size * size * np.exp(rng.uniform(np.log(low), np.log(high)))
    radius = np.sqrt(area / AREA_AT_UNIT_RADIUS[shape.name])
    return min(radius, 0.5 * (size - 1) / OUTER_RADIUS[shape.name])


def _outline(rng: np.random.Generator, shape: ShapeClass, radius: float) -> Polygons:
    """The shape at `radius`, randomly rotated (if it rotates), around the origin."""
    angle = rng.uniform(0.0, 2.0 * np.pi) if shape.rotates else 0.0
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [(radius * verts @ rotation.T, fill) for verts, fill in OUTLINES[shape.name]]


def _extent(polygons: Polygons) -> tuple[np.ndarray, np.ndarray]:
    """(2,) xy minimum and maximum of the outer outline (the first polygon)."""
    return polygons[0][0].min(axis=0), polygons[0][0].max(axis=0)


def _shifted(polygons: Polygons, offset: np.ndarray) -> Polygons:
    return [(verts + offset, fill) for verts, fill in polygons]


def _place_shape(
    rng: np.random.Generator, shape: ShapeClass, size: int, scale: str = "narrow"
) -> Polygons:
    """Random scale, rotation and position; the full extent stays inside the image."""
    polygons = _outline(rng, shape, _draw_radius(rng, shape, size, scale))
    lo, hi = _extent(polygons)
    offset = rng.uniform(-lo, (size - 1) - hi)  # (2,) xy shift keeping [lo, hi] in the image
    return _shifted(polygons, offset)


# where the partner goes: (axis, partner before the anchor along it)
SIDES = {"below": (1, False), "above": (1, True), "right": (0, False), "left": (0, True)}


def _place_pair(
    rng: np.random.Generator,
    anchor: ShapeClass,
    partner: ShapeClass,
    size: int,
    where: str,
    scale: str,
) -> tuple[Polygons, Polygons]:
    """The anchor and its partner at side `where` of it, a small gap apart, both inside the
    image, roughly aligned across that side (shrunk together when they would not fit)."""
    axis, partner_first = SIDES[where]
    radii = [_draw_radius(rng, s, size, scale) for s in (anchor, partner)]
    gap = rng.uniform(1.0, 4.0) * size / 128.0
    shapes = [_outline(rng, s, r) for s, r in zip((anchor, partner), radii, strict=True)]
    lengths = [np.subtract(*_extent(p)[::-1])[axis] for p in shapes]
    room = (size - 1) - gap
    if sum(lengths) > room:  # rare: both large along the stacking axis
        shrink = 0.98 * room / sum(lengths)
        shapes = [[(v * shrink, f) for v, f in p] for p in shapes]
        lengths = [x * shrink for x in lengths]
    first, second = (1, 0) if partner_first else (0, 1)
    start = rng.uniform(0.0, room - sum(lengths))
    starts = {first: start, second: start + lengths[first] + gap}
    across = 1 - axis
    lo_a, hi_a = _extent(shapes[0])
    centre = rng.uniform(-lo_a[across], (size - 1) - hi_a[across])  # the anchor's offset
    placed = []
    for k, polygons in enumerate(shapes):
        lo, hi = _extent(polygons)
        offset = np.zeros(2)
        offset[axis] = starts[k] - lo[axis]
        if k == 0:
            offset[across] = centre
        else:  # centred on the anchor's middle, within its own bounds
            middle = centre + 0.5 * (lo_a[across] + hi_a[across]) - 0.5 * (lo[across] + hi[across])
            offset[across] = np.clip(middle, -lo[across], (size - 1) - hi[across])
        placed.append(_shifted(polygons, offset))
    return placed[0], placed[1]


def _rasterize(polygons: Polygons, size: int) -> np.ndarray:
    """Fill polygons in order into a ``(size, size) bool`` mask (PIL is far faster than
    point-in-polygon tests in numpy)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for verts, fill in polygons:
        draw.polygon([(float(x), float(y)) for x, y in verts], fill=fill)
    return np.asarray(canvas, dtype=bool)


def _object_colour(
    rng: np.random.Generator, shape: ShapeClass, colour: str = "prototype"
) -> tuple[np.ndarray, float]:
    """``(3,)`` RGB in [0, 1] and its hue in degrees: mostly near the class prototype, sometimes
    any hue (`colour=off`: always any hue)."""
    if colour == "prototype" and rng.random() < PROTOTYPE_PROBABILITY:
        hue = shape.prototype_hue + rng.uniform(-HUE_JITTER, HUE_JITTER)
    else:
        hue = rng.uniform(0.0, 360.0)
    sat, val = rng.uniform(*VIVID_RANGE, size=2)
    return hsv_to_rgb(np.array(hue), np.array(sat), np.array(val)), float(hue % 360.0)


def _texture(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """``(size, size)`` value multiplier in [TEXTURE_DARK, 1]: stripes at a random angle, dots
    or checks on a grid, with a random phase; the hue of what it multiplies is kept."""
    period = max(3.0, TEXTURE_PERIOD_128 * size / 128.0)
    y, x = np.mgrid[0:size, 0:size].astype(float)
    phase = rng.uniform(0.0, period, size=2)
    if kind == "stripes":
        angle = rng.uniform(0.0, np.pi)
        dark = np.mod(x * np.cos(angle) + y * np.sin(angle) + phase[0], period) < period / 2
    elif kind == "dots":
        dx = np.mod(x + phase[0], period) - period / 2
        dy = np.mod(y + phase[1], period) - period / 2
        dark = dx**2 + dy**2 < (0.3 * period) ** 2
    elif kind == "checks":
        half = period / 2
        dark = (np.floor((x + phase[0]) / half) + np.floor((y + phase[1]) / half)) % 2 == 1
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return np.where(dark, TEXTURE_DARK, 1.0)


def _upsample_bilinear(grid: np.ndarray, size: int) -> np.ndarray:
    """``grid: (h, w, C)`` → ``(size, size, C)``, bilinear with corners aligned."""

    def axis_weights(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.linspace(0.0, n - 1, size)
        i0 = np.minimum(np.floor(pos).astype(int), n - 2)
        return i0, i0 + 1, pos - i0

    r0, r1, fr = axis_weights(grid.shape[0])
    c0, c1, fc = axis_weights(grid.shape[1])
    rows = grid[r0] * (1 - fr)[:, None, None] + grid[r1] * fr[:, None, None]  # (size, w, C)
    return rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size, 3)`` float RGB: a low-frequency muted colour field, a mid-frequency
    luminance texture and fine pixel noise. Low saturation keeps vivid objects visible."""
    cells = rng.integers(2, 6, size=2)
    hue = rng.uniform(0.0, 360.0, size=(*cells, 1))
    sat = rng.uniform(0.0, 0.3, size=(*cells, 1))
    val = rng.uniform(0.3, 0.8, size=(*cells, 1))
    field = _upsample_bilinear(hsv_to_rgb(hue, sat, val)[..., 0, :], size)
    texture = _upsample_bilinear(rng.uniform(-0.05, 0.05, size=(size // 8, size // 8, 1)), size)
    return field + texture + rng.normal(0.0, 0.02, size=(size, size, 1))


def _placements(
    rng: np.random.Generator, classes: np.ndarray, size: int, rules: Rules, num_classes: int
):
    """Yield `(class index, polygons)` per object to draw, partners right after anchors."""
    context = {CLASS_IDS[r.anchor] - 1: r for r in active_context_rules(rules, num_classes)}
    for cls in classes:
        shape, rule = SHAPE_CLASSES[cls], context.get(int(cls))
        if rule is not None and rng.random() < rule.p:
            partner = CLASS_IDS[rule.partner] - 1
            pair = _place_pair(rng, shape, SHAPE_CLASSES[partner], size, rule.where, rules.scale)
            yield int(cls), pair[0]
            yield partner, pair[1]
        else:
            yield int(cls), _place_shape(rng, shape, size, rules.scale)


def render_image(
    seed: int, split: str, index: int, size: int, num_classes: int, rules: Rules = Rules()
) -> RenderedImage:
    """Render image ``index`` of ``split``; its RNG depends only on ``(seed, split, index)``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))
    canvas = _background(rng, size)
    classes = rng.integers(0, num_classes, size=rng.integers(1, MAX_OBJECTS + 1))
    drawn = []  # (class index, full mask, hue, texture)
    for cls, polygons in _placements(rng, classes, size, rules, num_classes):
        shape = SHAPE_CLASSES[cls]
        mask = _rasterize(polygons, size)
        colour, hue = _object_colour(rng, shape, rules.colour)
        texture = texture_of(shape.name, rules)
        if texture is None:
            canvas[mask] = colour
        else:
            canvas[mask] = colour * _texture(rng, texture, size)[mask][:, None]
        drawn.append((cls, mask, hue, texture))
    canvas += rng.normal(0.0, 0.01, size=canvas.shape)  # sensor-like noise on everything
    image = np.round(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)
    return RenderedImage(image, _visible_objects(drawn, size))


def _visible_objects(drawn: list, size: int) -> list[RenderedObject]:
    """Subtract what later objects cover; drop objects too hidden to be annotated fairly.
    The topmost object is never occluded, so at least one survives."""
    min_pixels = MIN_VISIBLE_PIXELS_128 * (size / 128.0) ** 2
    objects: list[RenderedObject] = []
    covered = np.zeros((size, size), dtype=bool)
    for cls, full, hue, texture in drawn[::-1]:
        visible = full & ~covered
        covered |= full
        full_area, area = int(full.sum()), int(visible.sum())
        top = not objects
        if top or (area >= MIN_VISIBLE_FRACTION * full_area and area >= min_pixels):
            objects.append(RenderedObject(int(cls) + 1, visible, full_area, hue, texture))
    return objects[::-1]
