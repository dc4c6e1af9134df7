"""The planted truths measured back from a world's annotations alone (no pixels, no model):
co-occurrence and relative position of each context rule, texture per class, size buckets, and
each class's hue distance to its prototype. `python -m inverse_detr.data.shapes --stats DIR`."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from inverse_detr.data.shapes.render import SIDES

ALIGNED = 0.5  # across the side, centres within this share of the larger box's extent


def _circular_distance(a: np.ndarray, b: float) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


def is_at_side(anchor: list[float], other: list[float], where: str) -> bool:
    """Whether box `other` lies at side `where` of box `anchor` (COCO [x, y, w, h]): past the
    anchor's centre by more than half their summed extents (with some slack for occlusion),
    roughly aligned across."""
    axis, before = SIDES[where]
    across = 1 - axis
    centre = [np.array(b[:2]) + np.array(b[2:]) / 2 for b in (anchor, other)]
    apart = (centre[0] - centre[1]) if before else (centre[1] - centre[0])
    needed = 0.4 * (anchor[2 + axis] + other[2 + axis])
    aligned = abs(centre[1][across] - centre[0][across]) <= ALIGNED * max(
        anchor[2 + across], other[2 + across]
    )
    return bool(apart[axis] > needed and aligned)


def world_stats(annotation_file: Path, context_rules: list | None = None) -> dict:
    """Every planted rule's frequency, from one split's COCO file (see the module docstring).

    context_rules: `ContextRule`s to measure instead of the ones the file declares (e.g. the
    planted rules in a world that does not plant them: the control)."""
    coco = json.loads(Path(annotation_file).read_text(encoding="utf-8"))
    by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    images = [by_image[img["id"]] for img in coco["images"]]
    cats = {c["id"]: c for c in coco["categories"]}
    return {
        "images": len(images),
        "objects": len(coco["annotations"]),
        "context": _context(images, cats, _rules_to_measure(cats, context_rules)),
        "texture": _texture(coco["annotations"], cats),
        "sizes": _sizes(coco["annotations"], coco.get("info", {}).get("area_buckets", {})),
        "hue": _hue(coco["annotations"], cats, coco.get("info", {}).get("hue_jitter", 12.0)),
    }


def _rules_to_measure(cats: dict[int, dict], given: list | None) -> list[tuple]:
    """(anchor id, partner id, where, declared p or None) per rule to measure."""
    if given is None:
        return [
            (cid, rule["with"], rule["where"], rule["p"])
            for cid, cat in cats.items()
            for rule in cat.get("context", [])
        ]
    ids = {cat["name"]: cid for cid, cat in cats.items()}
    declared = {
        (a, r["with"], r["where"]): r["p"] for a, c in cats.items() for r in c.get("context", [])
    }
    rows = []
    for rule in given:
        if rule.anchor in ids and rule.partner in ids:
            key = (ids[rule.anchor], ids[rule.partner], rule.where)
            rows.append((*key, declared.get(key)))
    return rows


def _context(images: list[list[dict]], cats: dict[int, dict], rules: list[tuple]) -> list[dict]:
    """Per rule: P(partner in the image | anchor), P(partner at its side | anchor) and the share
    of the partner's images without the anchor."""
    rows = []
    for anchor, partner, where, p in rules:
        with_anchor = [im for im in images if _has(im, anchor)]
        with_partner = [im for im in images if _has(im, partner)]
        rows.append(
            {
                "anchor": cats[anchor]["name"],
                "partner": cats[partner]["name"],
                "where": where,
                "declared_p": p,
                "p_partner": _share(with_anchor, lambda im, q=partner: _has(im, q)),
                "p_at_side": _share(
                    with_anchor, lambda im, a=anchor, q=partner, w=where: _at_side(im, a, q, w)
                ),
                "p_partner_alone": _share(with_partner, lambda im, a=anchor: not _has(im, a)),
                "anchor_images": len(with_anchor),
            }
        )
    return rows


def _has(image: list[dict], category: int) -> bool:
    return any(a["category_id"] == category for a in image)


def _at_side(image: list[dict], anchor: int, partner: int, where: str) -> bool:
    anchors = [a["bbox"] for a in image if a["category_id"] == anchor]
    partners = [a["bbox"] for a in image if a["category_id"] == partner]
    return any(is_at_side(a, p, where) for a in anchors for p in partners)


def _share(items: list, predicate) -> float | None:
    return sum(map(predicate, items)) / len(items) if items else None


def _texture(annotations: list[dict], cats: dict[int, dict]) -> dict[str, dict]:
    """Per class: the declared texture and the share of its objects drawn with it."""
    out = {}
    for cid, cat in cats.items():
        textures = [a.get("attributes", {}).get("texture") for a in annotations]
        mine = [t for t, a in zip(textures, annotations, strict=True) if a["category_id"] == cid]
        out[cat["name"]] = {
            "declared": cat.get("texture"),
            "textured_share": _share(mine, lambda t: t is not None),
            "objects": len(mine),
        }
    return out


def _sizes(annotations: list[dict], buckets: dict[str, list[float]]) -> dict[str, float]:
    """Share of objects per area bucket (visible area, COCO's `area`)."""
    areas = np.array([a["area"] for a in annotations], dtype=float)
    if not len(areas):
        return {}
    return {
        name: float(((areas >= lo) & (areas < hi)).mean()) for name, (lo, hi) in buckets.items()
    }


def _hue(annotations: list[dict], cats: dict[int, dict], jitter: float) -> dict[str, dict]:
    """Per class: mean circular distance of the drawn hues to the prototype, and the share
    within the prototype's jitter."""
    out = {}
    for cid, cat in cats.items():
        hues = [a.get("attributes", {}).get("hue") for a in annotations if a["category_id"] == cid]
        hues = np.array([h for h in hues if h is not None], dtype=float)  # none before v2
        if not len(hues) or cat.get("prototype_hue") is None:
            continue
        distance = _circular_distance(hues, cat["prototype_hue"])
        out[cat["name"]] = {
            "rule": cat.get("hue_rule", "prototype"),
            "mean_distance": float(distance.mean()),
            "near_prototype_share": float((distance <= jitter + 1e-6).mean()),
        }
    return out


def format_stats(stats: dict) -> str:
    """The statistics as a few readable tables."""
    lines = [f"{stats['images']} images, {stats['objects']} objects", "", "context rules:"]
    for r in stats["context"]:
        lines.append(
            f"  {r['anchor']} → {r['partner']} {r['where']}: declared p {_p(r['declared_p'])}; "
            f"partner present {_pct(r['p_partner'])}, at that side {_pct(r['p_at_side'])} "
            f"of {r['anchor_images']} anchor images; partner without anchor "
            f"{_pct(r['p_partner_alone'])}"
        )
    if not stats["context"]:
        lines.append("  none")
    lines += ["", "texture (declared: share of objects textured):"]
    for name, t in stats["texture"].items():
        lines.append(f"  {name:<10} {t['declared'] or 'flat':<8} {_pct(t['textured_share'])}")
    lines += ["", "sizes: " + ", ".join(f"{k} {_pct(v)}" for k, v in stats["sizes"].items())]
    lines += ["", "hue (rule: mean distance to prototype, share within the jitter):"]
    for name, h in stats["hue"].items():
        lines.append(
            f"  {name:<10} {h['rule']:<9} {h['mean_distance']:5.1f}°  "
            f"{_pct(h['near_prototype_share'])}"
        )
    return "\n".join(lines)


def _p(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"
