"""Single-candidate visualisation for `python -m inverse_detr.invert_layout`:
`layout.candidate=C` (a DETR's query, an anchor or point index) or `layout.level=L|all` (the
candidate at the canvas centre of pyramid level L, or of every level: the scale study).
Per target and category: images, the context the detector reports on them, and (levels) the
detection rate and size each level draws.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig

from inverse_detr.analysis.plots import grouped_bars, reconstruction_grid
from inverse_detr.config import ConfigError
from inverse_detr.detectors.interface import Detector, detect
from inverse_detr.layout.context import (
    ContextStats,
    centre_candidate,
    context_statistics,
    levels_of,
    named_categories,
    planted_rules,
    single_candidate_images,
)
from inverse_detr.layout.plots import save_images
from inverse_detr.layout.settings import inversion_settings


def visualise_candidates(cfg: DictConfig, detector: Detector, out: Path) -> Path:
    """Images and context for each target candidate and each of `layout.categories` (every
    named one by default); returns the output folder."""
    size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    names = named_categories(detector)
    targets = candidate_targets(cfg, detector, size)
    categories = check_categories(cfg, detector, names)
    settings = inversion_settings(cfg.layout, cfg.seed, detector.name)
    every: dict[str, dict[str, ContextStats]] = {}
    for label, candidate in targets.items():
        folder = out / label
        images, stats = {}, {}
        for category in categories:
            name = names.get(category, f"class_{category}")
            result = single_candidate_images(
                detector,
                candidate,
                category,
                cfg.layout.seeds,
                size,
                settings,
                cfg.layout.batch_size,
            )
            save_images(result.images, folder / name)
            images[name] = result.images
            found = detect(detector, result.images, cfg.layout.batch_size)
            stats[name] = context_statistics(found, candidate, category)
        write_context(images, stats, names, folder, label)
        every[label] = stats
    if len(targets) > 1:
        write_scale(every, out)
    print(f"written to {out}", flush=True)
    return out


def candidate_targets(cfg: DictConfig, detector: Detector, size: tuple[int, int]) -> dict:
    """Folder label → candidate index: `layout.candidate`, or the centre of each `layout.level`
    (one-line ConfigErrors for indices the detector lacks)."""
    candidates = detector.candidates(size)
    level = str(cfg.layout.level)
    if level:
        levels = levels_of(candidates)
        chosen = levels if level == "all" else [_int(level, "layout.level")]
        bad = [x for x in chosen if x not in levels]
        if bad:
            raise ConfigError(
                f"config key 'layout.level' is {level!r}; {detector.name} has levels "
                f"{', '.join(map(str, levels))} (or all)"
            )
        return {f"level-{x}": centre_candidate(candidates, x, size) for x in chosen}
    if not 0 <= cfg.layout.candidate < candidates.count:
        raise ConfigError(
            f"config key 'layout.candidate' is {cfg.layout.candidate}; {detector.name}'s "
            f"candidates are 0-{candidates.count - 1}"
        )
    return {f"candidate-{cfg.layout.candidate}": int(cfg.layout.candidate)}


def _int(value: str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"config key '{key}' is {value!r}; expected a level or all") from None


def check_categories(cfg: DictConfig, detector: Detector, names: dict[int, str]) -> list[int]:
    """`layout.categories` (every named category when empty), as a one-line ConfigError when
    one is not the detector's."""
    chosen = list(dict.fromkeys(cfg.layout.categories)) or sorted(names)
    bad = [c for c in cfg.layout.categories if c not in detector.categories]
    if bad or not chosen:
        raise ConfigError(
            f"config key 'layout.categories' has {bad or 'nothing'}; the detector's categories "
            f"are {id_ranges(detector.categories)}"
        )
    return chosen


def id_ranges(ids) -> str:
    """Category ids as runs: [0, 1, 2, 5] → "0-2, 5"."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


def write_context(
    images: dict[str, torch.Tensor],
    stats: dict[str, ContextStats],
    names: dict[int, str],
    out: Path,
    label: str,
) -> None:
    """context.json (with the planted rules beside the recovered ones), context.png (context
    detections per found image) and images.png."""
    record, bars = {}, {}
    for target, s in stats.items():
        record[target] = s.as_dict() | {"names": {str(c): names.get(c, str(c)) for c in s.counts}}
        per_image = {names.get(c, str(c)): n / max(1, s.found) for c, n in s.counts.items()}
        bars[f"{target} ({s.found}/{s.images})"] = per_image
        sides = ", ".join(
            f"{names.get(c, c)} {n} {dict(s.sides[c])}" for c, n in s.counts.most_common()
        )
        print(
            f"{label} → {target}: found on {s.found}/{s.images} images; context: {sides or 'none'}"
        )
    record["planted_rules"] = planted_rules(stats, names)
    for rule in record["planted_rules"]:
        print(f"{label}: planted {rule['planted']}; recovered {rule}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "context.json").write_text(json.dumps(record, indent=2))
    title = f"{label}: other detections (score > 0.5) per image where the category is found"
    grouped_bars(bars, "detections / image", title).savefig(out / "context.png", dpi=150)
    shown = {name: batch[:8] for name, batch in images.items()}  # (≤ 8, 3, H, W) per category
    reconstruction_grid(shown).savefig(out / "images.png", dpi=150)


def write_scale(every: dict[str, dict[str, ContextStats]], out: Path) -> None:
    """scale.json and scale.png: per level and category, the share of images on which the
    category is found and the mean side of its box."""
    record = {
        label: {
            name: {"found": s.found / max(1, s.images), "mean_side_px": s.as_dict()["mean_side_px"]}
            for name, s in stats.items()
        }
        for label, stats in every.items()
    }
    (out / "scale.json").write_text(json.dumps(record, indent=2))
    sides = {
        label: {name: row["mean_side_px"] for name, row in rows.items()}
        for label, rows in record.items()
    }
    title = "side (px) of the object each level's central candidate draws (missing: not found)"
    grouped_bars(sides, "mean box side (px)", title).savefig(out / "scale.png", dpi=150)
    for label, rows in record.items():
        print(label, {n: (round(r["found"], 2), r["mean_side_px"]) for n, r in rows.items()})
