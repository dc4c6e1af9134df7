"""The truths planted in the shapes world, each switchable, each recorded in the COCO files.

- colour: `prototype` — each class has a prototypical hue and most objects are drawn near it
  (as in the first version of the world); `off` — every object's hue is uniform, the control.
- context: a few asymmetric co-occurrence rules (`CONTEXT_RULES`): an anchor class is accompanied
  by a partner class placed at a given side of it, in a share `p` of the anchors; the partner
  also appears on its own.
- texture: some classes carry a class-specific pattern (`TEXTURES`), the others stay flat.
- scale: `narrow` — sizes as in the first version; `spread` — an object's area is drawn from one
  of three buckets (`AREA_BUCKETS`, fractions of the canvas) chosen uniformly, so that small,
  medium and large objects are each about a third of the objects.
What each image actually got is recorded per annotation (`attributes`); `stats.py` measures
the rules back from the annotations alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from inverse_detr.data.shapes.classes import CLASS_IDS, SHAPE_CLASSES

COLOUR_RULES = ("prototype", "off")
SCALE_RULES = ("narrow", "spread")
PROTOTYPE_PROBABILITY = 0.85
HUE_JITTER = 12.0  # degrees either side of the prototype


@dataclass(frozen=True)
class ContextRule:
    """`anchor` is accompanied by `partner`, placed `where` of it (below | left | right | above),
    for a share `p` of the anchors."""

    anchor: str
    partner: str
    where: str
    p: float


CONTEXT_RULES = (
    ContextRule("triangle", "circle", "below", 0.8),
    ContextRule("star", "square", "left", 0.8),
)
TEXTURES = {"square": "stripes", "star": "dots", "cross": "checks"}
# visible area as a fraction of the canvas: [low, high); COCO's small/medium/large, for our canvas
AREA_BUCKETS = {"small": (0.0, 0.015), "medium": (0.015, 0.05), "large": (0.05, 1.0)}
# what `scale=spread` draws from (log-uniform within each, bucket chosen uniformly); the small
# and large ends are set by what stays recognisable and what fits
SPREAD_AREAS = {"small": (0.008, 0.015), "medium": (0.015, 0.05), "large": (0.05, 0.13)}


@dataclass(frozen=True)
class Rules:
    """Which truths a world plants; the defaults are the first version of the world."""

    colour: str = "prototype"
    context: bool = False
    texture: bool = False
    scale: str = "narrow"

    def __post_init__(self) -> None:
        if self.colour not in COLOUR_RULES:
            raise ValueError(f"colour rule must be one of {COLOUR_RULES}, got {self.colour!r}")
        if self.scale not in SCALE_RULES:
            raise ValueError(f"scale rule must be one of {SCALE_RULES}, got {self.scale!r}")

    def to_json(self) -> dict:
        return asdict(self)

    def tag(self) -> str:
        """A short name for cache folders; empty for the first version's rules."""
        if self == Rules():
            return ""
        parts = [
            f"colour-{self.colour}",
            "context" if self.context else "",
            "texture" if self.texture else "",
            f"scale-{self.scale}",
        ]
        return "-" + "-".join(p for p in parts if p)


PLANTED = Rules(colour="prototype", context=True, texture=True, scale="spread")


def active_context_rules(rules: Rules, num_classes: int) -> list[ContextRule]:
    """The context rules in force for a world of `num_classes` classes."""
    if not rules.context:
        return []
    return [
        r
        for r in CONTEXT_RULES
        if CLASS_IDS[r.anchor] <= num_classes and CLASS_IDS[r.partner] <= num_classes
    ]


def texture_of(name: str, rules: Rules) -> str | None:
    return TEXTURES.get(name) if rules.texture else None


def categories(num_classes: int, rules: Rules) -> list[dict]:
    """COCO category entries, each carrying the truths planted for it."""
    context = active_context_rules(rules, num_classes)
    entries = []
    for i, c in enumerate(SHAPE_CLASSES[:num_classes]):
        entry = {"id": i + 1, "name": c.name, "supercategory": "shape"}
        entry["prototype_hue"] = c.prototype_hue
        entry["hue_rule"] = "prototype" if rules.colour == "prototype" else "uniform"
        entry["texture"] = texture_of(c.name, rules)
        entry["context"] = [
            {"with": CLASS_IDS[r.partner], "where": r.where, "p": r.p}
            for r in context
            if r.anchor == c.name
        ]
        entries.append(entry)
    return entries


def world_info(rules: Rules, size: int) -> dict:
    """The world-level truths for the COCO file's `info`: rules and the area buckets."""
    canvas = size * size
    return {
        "rules": rules.to_json(),
        "area_buckets": {
            name: [round(lo * canvas, 1), round(hi * canvas, 1)]
            for name, (lo, hi) in AREA_BUCKETS.items()
        },
        "area_buckets_unit": "visible pixels ([low, high)); fractions of the canvas: "
        + ", ".join(f"{n} {lo:g}–{hi:g}" for n, (lo, hi) in AREA_BUCKETS.items()),
        "hue_jitter": HUE_JITTER,
        "prototype_probability": PROTOTYPE_PROBABILITY if rules.colour == "prototype" else 0.0,
    }
