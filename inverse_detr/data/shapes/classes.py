"""The categories of the shapes world: shape names, prototype hues, outlines in the unit disc."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_CLASSES = 5


@dataclass(frozen=True)
class ShapeClass:
    """One category of the world: its shape name and prototypical hue in degrees."""

    name: str
    prototype_hue: float
    rotates: bool = True


# The first six are 60° apart, so K = 5 or 6 keeps prototypes far apart; the last two fill in at
# 30° offsets. Shapes stay distinguishable when ~20 px wide (a hexagon would pass for a circle).
SHAPE_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("circle", 0.0, rotates=False),
    ShapeClass("square", 60.0),
    ShapeClass("triangle", 120.0),
    ShapeClass("star", 180.0),
    ShapeClass("ring", 240.0, rotates=False),
    ShapeClass("cross", 300.0),
    ShapeClass("half_disc", 30.0),
    ShapeClass("bar", 210.0),
)
CLASS_IDS = {c.name: i + 1 for i, c in enumerate(SHAPE_CLASSES)}  # name → COCO category id


def hsv_to_rgb(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Vectorised HSV → RGB. ``hue: (...)`` degrees, ``sat, val: (...)`` in [0, 1] →
    ``(..., 3)`` float RGB in [0, 1]."""
    hue, sat, val = (np.asarray(a, dtype=float)[..., None] for a in (hue, sat, val))
    # Closed form of the six-sector definition: channel n peaks where (n + hue/60) mod 6 is 3.
    k = np.mod(np.array([5.0, 3.0, 1.0]) + hue / 60.0, 6.0)
    return val - val * sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _regular_polygon(n: int, radius: float = 1.0, phase: float = np.pi / 2) -> np.ndarray:
    """``(n, 2)`` vertices on a circle of ``radius`` around the origin."""
    angles = phase + np.arange(n) * 2.0 * np.pi / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _unit_outlines() -> dict[str, list[tuple[np.ndarray, int]]]:
    """Per shape name, ``(vertices (N, 2), fill)`` polygons in the unit disc, drawn in order."""
    star = _regular_polygon(10)
    star[1::2] *= 0.45  # inner vertices of a five-pointed star
    arm = 0.3
    cross = np.array(
        [
            (arm, 1),
            (arm, arm),
            (1, arm),
            (1, -arm),
            (arm, -arm),
            (arm, -1),
            (-arm, -1),
            (-arm, -arm),
            (-1, -arm),
            (-1, arm),
            (-arm, arm),
            (-arm, 1),
        ],
        dtype=float,
    )
    arc = np.linspace(0.0, np.pi, 25)
    half_disc = np.stack([np.cos(arc), np.sin(arc) - 0.5], axis=1)  # centred on its extent
    return {
        "circle": [(_regular_polygon(48), 1)],
        "square": [(_regular_polygon(4, phase=np.pi / 4), 1)],
        "triangle": [(_regular_polygon(3), 1)],
        "star": [(star, 1)],
        "bar": [(np.array([(-1.0, -0.35), (1.0, -0.35), (1.0, 0.35), (-1.0, 0.35)]), 1)],
        "cross": [(cross, 1)],
        "ring": [(_regular_polygon(48), 1), (_regular_polygon(48, radius=0.55), 0)],
        "half_disc": [(half_disc, 1)],
    }


OUTLINES = _unit_outlines()


def _polygon_area(verts: np.ndarray) -> float:
    x, y = verts[:, 0], verts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


# filled area of each outline at radius 1 (holes subtract), and its circumscribed radius
AREA_AT_UNIT_RADIUS = {
    name: sum(_polygon_area(v) * (1 if fill else -1) for v, fill in polys)
    for name, polys in OUTLINES.items()
}
OUTER_RADIUS = {
    name: float(np.linalg.norm(polys[0][0], axis=1).max()) for name, polys in OUTLINES.items()
}
