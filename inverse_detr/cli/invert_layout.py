"""`python -m inverse_detr.invert_layout [model=<dir>] [layouts=val|<coco json>] [n=16] [--report]`

Generates, for each target layout, an image the detector reads as that layout (alternating the
detector's own Z-step and I-step SGD on the pixels, see `inverse_detr.layout`), then feeds the
images to every detector and scores them against the layouts with COCO AP. Any detector: a DETR
(a save_pretrained directory or a hub id) or a project RetinaNet / FCOS / Faster R-CNN /
Mask R-CNN directory (detector.json, e.g. checkpoints/shapes-retinanet). Writes:
  targets.json                  the layouts as a COCO instances file of the generated canvases
  <detector>/images/NNNN.png    the image generated for layout N by that detector
  <detector>/detections.json    that detector's detections on its images (COCO results format)
  <detector>/report.png         with --report: target boxes and detections over each image
  transfer.png  metrics.json    the AP matrix (rows: inverted with, columns: tested with)
Defaults: the shipped shapes detector and 16 layouts of the shapes world's val split (objects of
categories every detector knows, at most as many per layout as each can report). More
detectors for the matrix: `layout.detectors=[dir_or_hub_id,...]`. The detector's inversion-loss
terms that drive the image: `layout.loss=all|cls|reg|cls+reg|mask`. Options under `layout.*`
(see `inverse_detr.config.LayoutConfig`); the canvas is `data.image_size`.

`layout.query=Q [layout.categories=[...]] [layout.seeds=16]` (a DETR's queries) runs single-query
visualisation instead: per category, `seeds` images maximising query Q's probability of it,
then the context the detector reports on them. Writes query-Q/<category>/NNNN.png,
query-Q/images.png, query-Q/context.png and query-Q/context.json.

Runs on the GPU when one is present; `trainer.accelerator=cpu` (or `trainer=cpu`) keeps it on
the CPU, `trainer.accelerator=gpu` insists on the GPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import DictConfig
from torchvision.ops import box_convert
from torchvision.utils import save_image

from inverse_detr.analysis.plots import grouped_bars, heatmaps, reconstruction_grid
from inverse_detr.cli.device import inference_device
from inverse_detr.cli.shell import run_command
from inverse_detr.config import ConfigError, load_config
from inverse_detr.data.splits import data_splits
from inverse_detr.detectors.detr import local_dir
from inverse_detr.detectors.interface import Detector, Prediction, module_device
from inverse_detr.detectors.loading import load_detector
from inverse_detr.layout.context import (
    ContextStats,
    context_statistics,
    named_categories,
    query_outputs,
    single_query_images,
)
from inverse_detr.layout.optimize import (
    InversionResult,
    InversionSettings,
    invert_layouts,
    select_terms,
)
from inverse_detr.layout.plots import layout_grid
from inverse_detr.layout.settings import inversion_settings
from inverse_detr.layout.targets import Layout, LayoutSet, read_layouts, write_coco
from inverse_detr.layout.transfer import TransferMatrix, transfer_matrix


def load_detectors(
    cfg: DictConfig, device: torch.device | str, others: bool = True
) -> dict[str, Detector]:
    """Short name → detector: the main one (`model`) first, then (with `others`)
    `layout.detectors`, each under a unique short name (its folder or hub name)."""
    if cfg.model.name == "random":
        raise ConfigError("invert_layout needs a trained detector: model=<directory or hub id>")
    detectors: dict[str, Detector] = {}
    for name in [cfg.model.name, *(cfg.layout.detectors if others else [])]:
        short = Path(str(name).rstrip("/")).name
        if short in detectors:
            short = f"{short}-{len(detectors)}"
        detectors[short] = load_detector(name, device)
    return detectors


def layouts_for(cfg: DictConfig, detectors: dict[str, Detector]) -> LayoutSet:
    """`layout.layouts` read for what every detector can report: the categories all of them
    know, and no more objects than the fewest detections per image among them."""
    if cfg.layout.layouts == "val":
        annotations = data_splits(cfg.data)[1].annotations
    else:
        annotations = Path(cfg.layout.layouts).expanduser()
    known = set.intersection(*(set(d.categories) for d in detectors.values()))
    max_objects = min(d.max_detections for d in detectors.values())
    return read_layouts(annotations, cfg.layout.n, known, max_objects)


def check_terms(
    terms: str, detectors: dict[str, Detector], layout: Layout, size: tuple[int, int]
) -> None:
    """`layout.loss` against the terms each detector's `inversion_losses` gives for a layout
    (one blank (H, W) canvas each, no gradients): a one-line ConfigError before any work."""
    for name, detector in detectors.items():
        device = module_device(detector)
        blank = torch.zeros(1, 3, *size, device=device)
        with torch.no_grad():
            losses = detector.inversion_losses(blank, [layout.to(device).targets(size)])
        try:
            select_terms(losses, terms)
        except ValueError as err:
            raise ConfigError(f"config key 'layout.loss' is {terms!r}: {name}: {err}") from None


def invert_layout(cfg: DictConfig, device: torch.device | str = "cpu") -> Path:
    """Invert `cfg.layout.n` layouts with every detector (on `device`); returns the output
    folder."""
    detectors = load_detectors(cfg, device)
    layout_set = layouts_for(cfg, detectors)
    print(f"{cfg.layout.layouts}: {layout_set.summary()}", flush=True)
    size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    check_terms(cfg.layout.loss, detectors, layout_set.layouts[0], size)
    settings = inversion_settings(cfg.layout, cfg.seed)
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_coco(layout_set.layouts, layout_set.names, size, out / "targets.json")
    results = {}
    for name, detector in detectors.items():
        results[name] = invert_layouts(
            detector, layout_set.layouts, size, settings, cfg.layout.batch_size
        )
        save_images(results[name].images, out / name / "images")
    matrix = evaluate_inversions(cfg, detectors, layout_set, results, out)
    write_metrics(cfg, layout_set, size, settings, results, matrix, out / "metrics.json")
    print(matrix.table("ap50"), matrix.table("ap"), f"written to {out}", sep="\n", flush=True)
    return out


def visualise_query(cfg: DictConfig, device: torch.device | str = "cpu") -> Path:
    """Single-query visualisation of `layout.query` for each of `layout.categories`, and the
    context the detector reports around it (on `device`); returns the output folder."""
    (detector,) = load_detectors(cfg, device, others=False).values()
    query, names = cfg.layout.query, named_categories(detector)
    _check_query(cfg, detector, names)
    size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    settings = inversion_settings(cfg.layout, cfg.seed)
    out = output_dir(cfg) / f"query-{query}"
    images, stats = {}, {}
    for category in list(dict.fromkeys(cfg.layout.categories)) or sorted(names):
        name = names.get(category, f"class_{category}")
        result = single_query_images(
            detector, query, category, cfg.layout.seeds, size, settings, cfg.layout.batch_size
        )
        save_images(result.images, out / name)
        images[name] = result.images
        found = query_outputs(detector, result.images, cfg.layout.batch_size)
        stats[name] = context_statistics(found, query, category)
    write_context(images, stats, names, out)
    return out


def _check_query(cfg: DictConfig, detector: Detector, names: dict[int, str]) -> None:
    """The query and categories of single-query visualisation, as one-line ConfigErrors."""
    if detector.name != "detr":
        raise ConfigError(
            f"config key 'layout.query' is set: single-query visualisation needs a DETR today "
            f"(model={cfg.model.name} is a {detector.name})"
        )
    queries = detector.max_detections  # a DETR: one detection per query
    if not 0 <= cfg.layout.query < queries:
        raise ConfigError(
            f"config key 'layout.query' is {cfg.layout.query}; the detector's queries are "
            f"0-{queries - 1}"
        )
    bad = [c for c in cfg.layout.categories if c not in detector.categories]
    if bad or not (list(cfg.layout.categories) or names):
        raise ConfigError(
            f"config key 'layout.categories' has {bad or 'nothing'}; the detector's categories "
            f"are {id_ranges(detector.categories)}"
        )


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
) -> None:
    """context.json, context.png (context detections per found image) and images.png."""
    record, bars = {}, {}
    for target, s in stats.items():
        record[target] = s.as_dict() | {"names": {str(c): names.get(c, str(c)) for c in s.counts}}
        per_image = {names.get(c, str(c)): n / max(1, s.found) for c, n in s.counts.items()}
        bars[f"{target} ({s.found}/{s.images})"] = per_image
        sides = ", ".join(
            f"{names.get(c, c)} {n} {dict(s.sides[c])}" for c, n in s.counts.most_common()
        )
        print(
            f"query {s.query} → {target}: found on {s.found}/{s.images} images; "
            f"context: {sides or 'none'}"
        )
    (out / "context.json").write_text(json.dumps(record, indent=2))
    title = "other detections (score > 0.5) per image where the query reads its category"
    grouped_bars(bars, "detections / image", title).savefig(out / "context.png", dpi=150)
    shown = {name: batch[:8] for name, batch in images.items()}  # (≤ 8, 3, H, W) per category
    reconstruction_grid(shown).savefig(out / "images.png", dpi=150)
    print(f"written to {out}", flush=True)


def evaluate_inversions(
    cfg: DictConfig,
    detectors: dict[str, Detector],
    layout_set: LayoutSet,
    results: dict[str, InversionResult],
    out: Path,
) -> TransferMatrix:
    """The transfer matrix (transfer.png) and each detector's detections on its own images
    (detections.json; report.png with `layout.report`)."""
    inverted = {name: result.images for name, result in results.items()}
    size = tuple(next(iter(inverted.values())).shape[-2:])
    layouts, batch_size = layout_set.layouts, cfg.layout.batch_size
    matrix = transfer_matrix(inverted, detectors, layouts, size, batch_size)
    for name in detectors:
        own = matrix.detections[name, name]
        write_detections(own, out / name / "detections.json")
        if cfg.layout.report:
            figure = layout_grid(inverted[name], layouts, layout_set.names, own)
            figure.savefig(out / name / "report.png", dpi=150)
    title = "inverted with (rows) / tested with (columns)"
    matrices = {"AP50": matrix.values("ap50"), "AP": matrix.values("ap")}
    heatmaps(matrices, matrix.columns, title).savefig(out / "transfer.png", dpi=150)
    return matrix


def output_dir(cfg: DictConfig) -> Path:
    """`layout.out`, else <out_dir>/layout-<detector folder or hub name>."""
    if cfg.layout.out:
        return Path(cfg.layout.out).expanduser()
    model = local_dir(cfg.model.name) or Path(cfg.model.name)
    return Path(cfg.out_dir).expanduser() / f"layout-{model.name}"


def save_images(images: torch.Tensor, folder: Path) -> None:
    """(N, 3, H, W) [0, 1] images as NNNN.png, N the layout's index in targets.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        save_image(image, folder / f"{index:04d}.png")


def write_detections(predictions: list[Prediction], path: Path) -> None:
    """Every detection of each image (a DETR: every query's best class), in COCO results
    format (xywh pixels); image i is layout i."""
    results = []
    for index, found in enumerate(predictions):
        xywh = box_convert(found.boxes, "xyxy", "xywh").tolist()
        for label, score, box in zip(
            found.labels.tolist(), found.scores.tolist(), xywh, strict=True
        ):
            results.append(
                {
                    "image_id": index,
                    "category_id": label,
                    "score": round(score, 4),
                    "bbox": [round(v, 2) for v in box],
                }
            )
    path.write_text(json.dumps(results))


def write_metrics(
    cfg: DictConfig,
    layout_set: LayoutSet,
    size: tuple[int, int],
    settings: InversionSettings,
    results: dict[str, InversionResult],
    matrix: TransferMatrix,
    path: Path,
) -> None:
    """metrics.json: the layouts read, the settings, timing and loss per inverting detector,
    and the transfer matrix."""
    inverted_with = {
        name: {
            "seconds": round(r.seconds, 2),
            "layouts_per_second": r.per_second,
            "loss_first": float(r.loss[0].mean()),
            "loss_last": float(r.loss[-1].mean()),
        }
        for name, r in results.items()
    }
    metrics = {
        "layouts": cfg.layout.layouts,
        "n": len(layout_set.layouts),
        "objects": sum(map(len, layout_set.layouts)),
        "skipped": dict(layout_set.skipped),
        "image_size": list(size),
        "batch_size": cfg.layout.batch_size,
        "settings": asdict(settings),
        "inverted_with": inverted_with,
        "transfer": matrix.as_dict(),
    }
    path.write_text(json.dumps(metrics, indent=2))


def main(argv: list[str] | None = None) -> int:
    return run_command(_invert, argv, __doc__)


def _invert(args: list[str]) -> None:
    args = ["layout.report=true" if a == "--report" else a for a in args]
    cfg = load_config(args)
    (visualise_query if cfg.layout.query >= 0 else invert_layout)(cfg, inference_device(cfg, args))
