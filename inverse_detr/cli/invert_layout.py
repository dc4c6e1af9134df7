"""`python -m inverse_detr.invert_layout [model=<dir>] [layouts=val|<coco json>] [n=16] [--report]`

Generates, for each target layout, an image the detector reads as that layout (alternating the
detector's own Z-step and I-step SGD on the pixels, see `inverse_detr.layout`), then feeds the
images to every detector and scores them against the layouts with COCO AP. Any detector: a DETR
(a save_pretrained directory or a hub id) or a project RetinaNet / FCOS / Faster R-CNN /
Mask R-CNN directory (detector.json, e.g. checkpoints/shapes-retinanet). Writes:
  targets.json                  the layouts as a COCO instances file of the generated canvases
  <row>/images/NNNN.png         the image generated for layout N (a row: an inverting detector;
                                a detector with a mask head also gives <name>.boxes, inverted
                                without its mask term)
  <row>/detections.json         its detector's detections on them (COCO results format)
  <row>/report.png              with --report: target boxes and detections over each image
  transfer.png  metrics.json    the AP matrix (rows: inverted with, columns: tested with; box
                                AP, and mask AP in a <name>.mask column for a mask head)
Defaults: the shipped shapes detector and 16 layouts of the shapes world's val split (objects of
categories every detector knows, at most as many per layout as each can report). More
detectors for the matrix: `layout.detectors=[dir_or_hub_id,...]`. The detector's inversion-loss
terms that drive the image: `layout.loss=all|cls|reg|cls+reg|mask`. Each detector inverts with
its family's tuned settings (`inverse_detr.layout.settings.TUNED`); a `layout.*` key set here
applies to all (see `inverse_detr.config.LayoutConfig`); the canvas is `data.image_size`.

Single-candidate visualisation instead of layouts: `layout.candidate=C` (a DETR's query, an
anchor or point index) or `layout.level=L|all` (the candidate at the canvas centre of pyramid
level L, or of each level: the scale study), with `[layout.categories=[...]] [layout.seeds=16]`:
per category, `seeds` images maximising that candidate's score for it, then the context the
detector reports on them, beside the shapes world's planted co-occurrences. Writes
<candidate-C | level-L>/<category>/NNNN.png, images.png, context.png, context.json, and with
levels scale.json and scale.png (the share found and the box side each level draws).

`layout.texture=true`: masked texture removal instead — every detector reads the first `n`
val images before and after each object's texture is flattened to its mean colour (no style
network offline); writes texture.json and texture.png (score and IoU change per size bucket,
textured vs flat categories).

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

from inverse_detr.analysis.plots import heatmaps
from inverse_detr.cli.device import inference_device
from inverse_detr.cli.shell import run_command
from inverse_detr.cli.single_candidate import visualise_candidates
from inverse_detr.cli.texture import texture_study
from inverse_detr.config import ConfigError, load_config
from inverse_detr.data.splits import data_splits
from inverse_detr.detectors.detr import local_dir
from inverse_detr.detectors.interface import Detector, Prediction
from inverse_detr.detectors.loading import load_detector
from inverse_detr.layout.optimize import (
    InversionResult,
    invert_layouts,
)
from inverse_detr.layout.plan import Row, check_terms, matrix_rows, probe_terms
from inverse_detr.layout.plots import layout_grid, save_images
from inverse_detr.layout.settings import inversion_settings
from inverse_detr.layout.targets import LayoutSet, read_layouts, write_coco
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


def layouts_for(
    cfg: DictConfig, detectors: dict[str, Detector], mask_size: tuple[int, int] | None = None
) -> LayoutSet:
    """`layout.layouts` read for what every detector can report: the categories all of them
    know, and no more objects than the fewest detections per image among them; with
    `mask_size` (H, W), the objects' masks too."""
    if cfg.layout.layouts == "val":
        annotations = data_splits(cfg.data)[1].annotations
    else:
        annotations = Path(cfg.layout.layouts).expanduser()
    known = set.intersection(*(set(d.categories) for d in detectors.values()))
    max_objects = min(d.max_detections for d in detectors.values())
    return read_layouts(annotations, cfg.layout.n, known, max_objects, mask_size)


def plan_rows(cfg: DictConfig, detectors: dict[str, Detector], size: tuple[int, int]) -> list[Row]:
    """The rows to invert (a boxes-only one beside a detector's full mask objective), each
    detector with its family's settings under the config's; `layout.loss` is checked against
    every detector's terms first (one-line ConfigError)."""
    rows = []
    for name, detector in detectors.items():
        available = probe_terms(detector, size)
        try:
            check_terms(cfg.layout.loss, available)
        except ValueError as err:
            raise ConfigError(
                f"config key 'layout.loss' is {cfg.layout.loss!r}: {name}: {err}"
            ) from None
        settings = inversion_settings(cfg.layout, cfg.seed, detector.name)
        rows += matrix_rows(name, name, available, settings)
    return rows


def invert_layout(cfg: DictConfig, device: torch.device | str = "cpu") -> Path:
    """Invert `cfg.layout.n` layouts with every detector (on `device`); returns the output
    folder."""
    detectors = load_detectors(cfg, device)
    size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    rows = plan_rows(cfg, detectors, size)
    with_masks = any(row.masks for row in rows)  # a detector with a mask term uses it
    layout_set = layouts_for(cfg, detectors, size if with_masks else None)
    print(f"{cfg.layout.layouts}: {layout_set.summary()}", flush=True)
    if cfg.layout.loss == "mask" and layout_set.skipped["layouts without masks"]:
        raise ConfigError(
            f"config key 'layout.loss' is 'mask' but {cfg.layout.layouts}: "
            f"{layout_set.skipped['layouts without masks']} layouts have no masks"
        )
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_coco(layout_set.layouts, layout_set.names, size, out / "targets.json")
    results = {}
    for row in rows:
        print(f"inverting with {row.name} (loss terms: {row.settings.terms})", flush=True)
        results[row.name] = invert_layouts(
            detectors[row.detector], layout_set.layouts, size, row.settings, cfg.layout.batch_size
        )
        save_images(results[row.name].images, out / row.name / "images")
    matrix = evaluate_inversions(cfg, detectors, layout_set, rows, results, out)
    write_metrics(cfg, layout_set, size, rows, results, matrix, out / "metrics.json")
    print(matrix.table("ap50"), matrix.table("ap"), f"written to {out}", sep="\n", flush=True)
    return out


def evaluate_inversions(
    cfg: DictConfig,
    detectors: dict[str, Detector],
    layout_set: LayoutSet,
    rows: list[Row],
    results: dict[str, InversionResult],
    out: Path,
) -> TransferMatrix:
    """The transfer matrix (transfer.png) and each row's detections by its own detector
    (detections.json; report.png with `layout.report`)."""
    inverted = {name: result.images for name, result in results.items()}
    size = tuple(next(iter(inverted.values())).shape[-2:])
    layouts, batch_size = layout_set.layouts, cfg.layout.batch_size
    matrix = transfer_matrix(inverted, detectors, layouts, size, batch_size)
    for row in rows:
        own = matrix.detections[row.name, row.detector]
        write_detections(own, out / row.name / "detections.json")
        if cfg.layout.report:
            figure = layout_grid(inverted[row.name], layouts, layout_set.names, own)
            figure.savefig(out / row.name / "report.png", dpi=150)
    title = "inverted with (rows) / tested with (columns)"
    matrices = {"AP50": matrix.values("ap50"), "AP": matrix.values("ap")}
    figure = heatmaps(matrices, matrix.columns, title, matrix.rows)
    figure.savefig(out / "transfer.png", dpi=150)
    return matrix


def output_dir(cfg: DictConfig) -> Path:
    """`layout.out`, else <out_dir>/layout-<detector folder or hub name>."""
    if cfg.layout.out:
        return Path(cfg.layout.out).expanduser()
    model = local_dir(cfg.model.name) or Path(cfg.model.name)
    return Path(cfg.out_dir).expanduser() / f"layout-{model.name}"


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
    rows: list[Row],
    results: dict[str, InversionResult],
    matrix: TransferMatrix,
    path: Path,
) -> None:
    """metrics.json: the layouts read, and per row its detector, settings, timing and loss;
    the transfer matrix."""
    inverted_with = {
        row.name: {
            "detector": row.detector,
            "settings": asdict(row.settings),
            "seconds": round(r.seconds, 2),
            "layouts_per_second": r.per_second,
            "loss_first": float(r.loss[0].mean()),
            "loss_last": float(r.loss[-1].mean()),
        }
        for row, r in zip(rows, results.values(), strict=True)
    }
    metrics = {
        "layouts": cfg.layout.layouts,
        "n": len(layout_set.layouts),
        "objects": sum(map(len, layout_set.layouts)),
        "skipped": dict(layout_set.skipped),
        "image_size": list(size),
        "batch_size": cfg.layout.batch_size,
        "inverted_with": inverted_with,
        "transfer": matrix.as_dict(),
    }
    path.write_text(json.dumps(metrics, indent=2))


def main(argv: list[str] | None = None) -> int:
    return run_command(_invert, argv, __doc__)


def _invert(args: list[str]) -> None:
    args = ["layout.report=true" if a == "--report" else a for a in args]
    cfg = load_config(args)
    device = inference_device(cfg, args)
    if cfg.layout.texture:
        texture_study(cfg, load_detectors(cfg, device), output_dir(cfg))
    elif cfg.layout.candidate >= 0 or cfg.layout.level:
        (detector,) = load_detectors(cfg, device, others=False).values()
        visualise_candidates(cfg, detector, output_dir(cfg))
    else:
        invert_layout(cfg, device)
