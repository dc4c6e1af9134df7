"""`python -m inverse_detr.attribute model=<dir> [n=16] [method=gradcam|occlusion|both]`

Where a detector's evidence for each detection lies: for `n` confident detections of the val
split (score ≥ attribution.min_score, matched to an annotated object with IoU ≥ 0.5, image by
image in id order), an attribution map of the class score (its log-odds) and of the box (each
coordinate, and the four together) on the input image, by Grad-CAM on a backbone layer
(pytorch-grad-cam; `attribution.layer`, default the backbone's last stage) and by occlusion
(captum), zeroed outside the detection's box (`attribution.restrict`, `attribution.margin`).
Any detector: a DETR or a project RetinaNet / FCOS / Faster R-CNN / Mask R-CNN directory (e.g.
checkpoints/shapes-fcos).
Each map is scored against the object's mask: the share of its mass in a band of
`attribution.band` px along the mask boundary vs in the interior, for class and box maps, and
the IoU of the two maps' top `attribution.top` regions; means per method, over all detections
and over the textured and the flat categories (the shapes world's categories record `texture`).
Writes, under attribution.out (default <out_dir>/attribution-<model folder>):
  figures/NNNN-image<id>-<category>.png   image | class map | box map, one row per method
  metrics.json   the settings, every detection's numbers, the means (`summary`)
  shares.png     the boundary and interior shares per method
  report.html    the means as tables, shares.png and the first attribution.figures figures
`logger=wandb` given on the command line also logs the detections as a W&B table (offline
unless logged in or WANDB_MODE says). Runs on the GPU when one is present; trainer=cpu keeps
it on the CPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from inverse_detr.analysis.report import Section, Table, write_report
from inverse_detr.attribution.explain import explain, methods_for
from inverse_detr.attribution.maps import AttributionSettings, box_region
from inverse_detr.attribution.metrics import SUMMARY_KEYS, detection_metrics, summarise
from inverse_detr.attribution.plots import detection_figure, share_bars
from inverse_detr.attribution.select import Detection, explainable_detections
from inverse_detr.attribution.targets import default_layer, feature_layer
from inverse_detr.cli.device import inference_device
from inverse_detr.cli.shell import run_command
from inverse_detr.config import ConfigError, given_keys, load_config
from inverse_detr.data.annotated import AnnotatedImage
from inverse_detr.data.coco import read_coco
from inverse_detr.data.splits import data_splits
from inverse_detr.detectors.detr import local_dir
from inverse_detr.detectors.interface import Detector
from inverse_detr.detectors.loading import load_detector
from inverse_detr.errors import UserError

SHORT_KEYS = {"n": "attribution.n", "method": "attribution.method"}  # this command's own
SETTINGS = ("layer", "restrict", "margin", "window", "stride")  # → AttributionSettings


def output_dir(cfg: DictConfig) -> Path:
    """`attribution.out`, else <out_dir>/attribution-<detector folder or hub name>."""
    if cfg.attribution.out:
        return Path(cfg.attribution.out).expanduser()
    model = local_dir(cfg.model.name) or Path(cfg.model.name)
    return Path(cfg.out_dir).expanduser() / f"attribution-{model.name}"


def attribute(cfg: DictConfig, device: torch.device | str = "cpu") -> tuple[Path, list[dict]]:
    """Explain `attribution.n` val detections of `cfg.model.name`; the output folder and one
    row of numbers per (detection, method)."""
    if cfg.model.name == "random":
        raise ConfigError("attribute needs a trained detector: model=<directory or hub id>")
    detector = load_detector(cfg.model.name, device)
    a = cfg.attribution
    feature_layer(detector, a.layer)  # an unknown layer: one line, before any work
    split = data_splits(cfg.data)[1]
    coco = read_coco(split.annotations)
    textured = {c["id"] for c in coco.dataset["categories"] if c.get("texture")}
    out = output_dir(cfg)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    found = explainable_detections(detector, coco, split.images, a.n, a.min_score)
    rows, figures = [], []
    for k, (sample, detection, o) in enumerate(tqdm(found, total=a.n, desc="detections")):
        about = describe(detector, sample, detection, textured)
        figures.append(out / "figures" / f"{k:04d}-image{sample.image_id}-{about['name']}.png")
        rows += explain_one(cfg, detector, sample, detection, o, about, figures[-1])
    if not rows:
        raise UserError(
            f"no detection of {cfg.model.name} scored ≥ attribution.min_score={a.min_score} "
            "on an annotated val object: nothing to explain"
        )
    write_outputs(cfg, detector, rows, summarise(rows), figures, out)
    return out, rows


def describe(
    detector: Detector, sample: AnnotatedImage, detection: Detection, textured: set
) -> dict:
    """The detection's identity as metrics.json records it."""
    return {
        "image_id": sample.image_id,
        "category": detection.category,
        "name": detector.categories.get(detection.category, str(detection.category)),
        "textured": detection.category in textured,
        "score": round(detection.score, 4),
        "candidate": detection.candidate,
        "box": [round(float(v), 2) for v in detection.box],
    }


def explain_one(
    cfg: DictConfig,
    detector: Detector,
    sample: AnnotatedImage,
    detection: Detection,
    index: int,
    about: dict,
    figure_path: Path,
) -> list[dict]:
    """Every method's maps of one detection (object `index` of the sample): its figure saved
    to `figure_path`, one row of numbers per method returned."""
    a = cfg.attribution
    settings = AttributionSettings(**{k: a[k] for k in SETTINGS})
    maps = [explain(detector, sample.image, detection, m, settings) for m in methods_for(a.method)]
    mask = sample.masks[index]
    region = box_region(detection.box, tuple(mask.shape), a.margin) if a.restrict else None
    rows = [
        {**about, "method": m.method, **detection_metrics(m, mask, a.band, a.top, region)}
        for m in maps
    ]
    title = f"image {sample.image_id}: {about['name']} {detection.score:.2f}"
    figure = detection_figure(sample.image, maps, detection.box, title, mask)
    figure.savefig(figure_path, dpi=90)
    return rows


def write_outputs(
    cfg: DictConfig,
    detector: Detector,
    rows: list[dict],
    summary: dict,
    figures: list[Path],
    out: Path,
) -> None:
    """metrics.json, shares.png and report.html."""
    a = cfg.attribution
    metrics = {
        "model": cfg.model.name,
        "detector": detector.name,
        "detections": len(figures),
        "settings": OmegaConf.to_container(a),
        "layer": a.layer or default_layer(detector),
        "summary": summary,
        "rows": rows,
    }
    (out / "metrics.json").write_text(json.dumps(_no_nan(metrics), indent=2))
    share_bars(summary, f"{Path(cfg.model.name).name}: where the evidence lies").savefig(
        out / "shares.png", dpi=120
    )
    header = ["method / categories", "n", *SUMMARY_KEYS, "cls_empty", "box_empty"]
    table = Table(
        header,
        [
            [
                f"{method} / {group}",
                v["n"],
                *(v[k] for k in SUMMARY_KEYS),
                v["cls_empty"],
                v["box_empty"],
            ]
            for method, groups in summary.items()
            for group, v in groups.items()
        ],
    )
    note = (
        f"Shares of attribution mass in a band of {a.band} px along the object's mask boundary "
        f"(both sides) and in the interior; top_iou: IoU of the class and box maps' top "
        f"{a.top:.0%} regions. Layer {metrics['layer']}; maps restricted to the box: {a.restrict}. "
        "A share grows with its region's area (a small object is mostly band): compare class "
        "with box maps on the same detections. *_empty: all-zero maps, left out of the means."
    )
    sections = [
        Section("Boundary vs interior", note, [table], [out / "shares.png"]),
        Section("Detections (image | class map | box map)", "", [], figures[: a.figures]),
    ]
    title = f"Attribution of {Path(cfg.model.name).name} ({detector.name})"
    write_report(
        out / "report.html", title, f"{len(figures)} detections of the val split", sections
    )


def _no_nan(value):
    """JSON has no NaN: None instead, recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def log_wandb(cfg: DictConfig, rows: list[dict], out: Path) -> None:
    """The detections' numbers as a W&B table and the figures as images, in a run of its own
    (offline unless the user is logged in or sets WANDB_MODE)."""
    import os

    import wandb

    from inverse_detr.lit.loggers import wandb_logged_in

    offline = "WANDB_MODE" not in os.environ and not wandb_logged_in()
    run = wandb.init(
        project=cfg.wandb_project,
        name=out.name,
        dir=str(out),
        mode="offline" if offline else None,
        config=OmegaConf.to_container(cfg.attribution),
    )
    columns = list(rows[0])
    table = wandb.Table(columns=columns, data=[[_cell(r[c]) for c in columns] for r in rows])
    figures = sorted((out / "figures").glob("*.png"))
    run.log(
        {
            "attribution/detections": table,
            "attribution/figures": [wandb.Image(str(f)) for f in figures],
        }
    )
    run.finish()


def _cell(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value) if isinstance(value, list) else value


def main(argv: list[str] | None = None) -> int:
    return run_command(_attribute, argv, __doc__)


def _attribute(args: list[str]) -> None:
    args = [_long(a) for a in args]
    cfg = load_config(args)
    out, rows = attribute(cfg, inference_device(cfg, args))
    if "logger" in given_keys(args) and cfg.logger == "wandb":
        log_wandb(cfg, rows, out)
    count = len({(r["image_id"], tuple(r["box"])) for r in rows})
    print(f"{count} detections explained, written to {out}", flush=True)


def _long(arg: str) -> str:
    key, sep, value = arg.partition("=")
    return f"{SHORT_KEYS[key]}={value}" if sep and key in SHORT_KEYS else arg
