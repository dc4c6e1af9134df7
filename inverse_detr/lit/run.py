"""One training run (or a λ sweep's runs) of `python -m inverse_detr.train`: build the job the
config asks for, fit it with Lightning, export the best weights into the run folder."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig
from transformers import DetrForObjectDetection

from inverse_detr.analysis.plots import reconstruction_grid
from inverse_detr.analysis.suite import Options
from inverse_detr.config import ConfigError, save_config
from inverse_detr.data.coco import read_categories
from inverse_detr.data.splits import data_splits
from inverse_detr.detectors.build import build_detr, build_transform, chain_spec
from inverse_detr.detectors.classic import ClassicDetector, ClassicSpec, build_classic
from inverse_detr.detectors.detr import (
    autocast_backbone,
    forward_embeddings,
    image_normalization,
    save_detr,
    trainable_from_scratch,
)
from inverse_detr.detectors.loading import save_detector
from inverse_detr.errors import Preempted
from inverse_detr.export import export_inverter, load_inverter
from inverse_detr.inverse.chain import InverseChain
from inverse_detr.inverse.spec import ChainSpec, build_chain
from inverse_detr.inverse.widen import widen_backbone
from inverse_detr.lit.build import build_inversion_module
from inverse_detr.lit.cache import EmbeddingCache, cache_wanted
from inverse_detr.lit.callbacks import AnalysisCallback
from inverse_detr.lit.checkpointing import (
    check_resumable,
    remove_partial_files,
)
from inverse_detr.lit.datamodule import DetectionDataModule, build_datamodule
from inverse_detr.lit.detection import DetectionModule
from inverse_detr.lit.inversion import InversionModule
from inverse_detr.lit.joint import JOINT_STAGES, JointModule
from inverse_detr.lit.loggers import finish_logger
from inverse_detr.lit.precision import resolve_precision
from inverse_detr.lit.trainer import build_trainer, run_dir_for

log = logging.getLogger("inverse_detr.train")  # the name users filter logs by
# the frozen DETR is in eval mode on purpose; Lightning warns about it on every run
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@dataclass
class Job:
    """What `run` trains: the module, the metric that picks the best checkpoint, and what to
    write into the run folder afterwards (on rank zero, with the best weights loaded)."""

    module: pl.LightningModule
    monitor: str | None  # None: keep the last epoch
    monitor_mode: str
    finish: Callable[[Path], None]
    grid_stages: tuple[str, ...]
    with_masks: bool = False  # the data module decodes instance masks
    check_data: Callable[[object], None] | None = None  # on the training dataset, before fit
    fixed_shards: bool = False  # DDP ranks keep their shards (a per-rank embedding cache)


def _inversion_job(cfg: DictConfig, run_dir: Path) -> Job:
    detr = build_detr(cfg.model, cfg.seed)
    detr_name = cfg.model.name
    if detr_name == "random":  # keep the exact random DETR, so the export can be reloaded
        detr_name = "detr"
        _on_rank_zero(detr.save_pretrained, run_dir / "export" / "detr")
    chain = None
    if cfg.inverse.init:
        chain, spec = _loaded_chain(cfg.inverse.init, detr, cfg.inverse.stages, "inverse.init")
        if cfg.inverse.init_widen:
            chain, spec = _widened(chain, spec, cfg)
    else:
        spec = chain_spec(cfg.inverse, detr)
    wanted, why = cache_wanted(cfg)
    cache = EmbeddingCache.from_config(cfg, run_dir) if wanted else None
    log.info("embedding cache %s: %s", "on" if wanted else "off", why)
    module = build_inversion_module(cfg, detr, spec, cache=cache, chain=chain)
    transform = build_transform(cfg.data, cfg.model.name)

    def finish(out: Path) -> None:
        export_inverter(module.chain, spec, transform, detr_name, out / "export")

    check = partial(check_labels, detr=detr)
    job = Job(
        module, module.selection_metric, "min", finish, tuple(module.image_stages), False, check
    )
    return replace(job, fixed_shards=wanted)


def _joint_job(cfg: DictConfig, run_dir: Path) -> Job:
    j = cfg.joint
    detr = build_detr(cfg.model, cfg.seed, frozen=False)
    if j.from_scratch:
        trainable_from_scratch(detr)
    if j.backbone_bf16:
        autocast_backbone(detr)
    if j.init_inverse:
        chain, spec = _loaded_chain(j.init_inverse, detr, JOINT_STAGES, "joint.init_inverse")
    else:
        spec = replace(chain_spec(cfg.inverse, detr), stages=JOINT_STAGES)
        chain = build_chain(spec)
    mean, std = image_normalization(cfg.model.name)
    module = JointModule(
        detr,
        chain,
        mean,
        std,
        lam=j.lam,
        lr_backbone=j.lr_backbone,
        lr_transformer=j.lr_transformer,
        lr_inverse=j.lr_inverse,
        weight_decay=j.weight_decay,
        on_nonfinite=cfg.trainer.on_nonfinite,
    )
    transform = build_transform(cfg.data, cfg.model.name)

    def finish(out: Path) -> None:
        save_detr(module.detr, out / "detr", mean, std)
        export_inverter(module.chain, spec, transform, "../detr", out / "export")

    grid = ("decoder",) if j.lam > 0 else ()
    monitor = "val/ap50" if j.keep == "best_ap50" else None
    return Job(module, monitor, "max", finish, grid, False, partial(check_labels, detr=detr))


def _detection_job(cfg: DictConfig, run_dir: Path) -> Job:
    """A classic detector from scratch (mode=detection); its folder `detector/` at the end."""
    d = cfg.detector
    try:
        detector = _classic_detector(cfg)
    except ValueError as err:  # the builders' own checks
        raise ConfigError(f"config section 'detector': {err}") from None
    spec = detector.spec
    module = DetectionModule(
        detector,
        spec.mean,
        spec.std,
        lr=d.lr,
        weight_decay=d.weight_decay,
        warmup_steps=d.warmup_steps,
        on_nonfinite=cfg.trainer.on_nonfinite,
    )

    def finish(out: Path) -> None:
        save_detector(detector, out / "detector", fp16=False)

    return Job(module, "val/ap", "max", finish, (), d.family == "mask_rcnn")


def _classic_detector(cfg: DictConfig) -> ClassicDetector:
    """A seeded random classic detector for the data's categories and square canvas."""
    d, size = cfg.detector, list(cfg.data.image_size)
    if size[0] != size[1]:
        raise ValueError(f"mode=detection needs a square canvas, got data.image_size={size}")
    transform = build_transform(cfg.data, "random")
    spec = ClassicSpec(
        d.family,
        read_categories(data_splits(cfg.data)[0].annotations),
        image_size=size[0],
        backbone=d.backbone,
        out_indices=tuple(d.out_indices),
        fpn_channels=d.fpn_channels,
        mean=tuple(transform.mean.flatten().tolist()),
        std=tuple(transform.std.flatten().tolist()),
    )
    torch.manual_seed(cfg.seed)
    return ClassicDetector(build_classic(spec), spec)


def _loaded_chain(
    export: str, detr, stages: Sequence[str], key: str
) -> tuple[InverseChain, ChainSpec]:
    """The trained inverse modules of `export` a run goes on with, only `stages` of them (a
    module it does not train would sit in the optimiser without ever getting a gradient)."""
    loaded = load_inverter(export, detr=detr)
    missing = [s for s in stages if s not in loaded.spec.stages]
    if missing:
        raise ConfigError(
            f"{key}={export} has no inverse {', '.join(missing)}; the run trains "
            f"{', '.join(stages)}"
        )
    for stage in set(loaded.spec.stages) - set(stages):
        setattr(loaded.chain, stage, None)
    return loaded.chain, replace(loaded.spec, stages=tuple(stages))


def _widened(
    chain: InverseChain, spec: ChainSpec, cfg: DictConfig
) -> tuple[InverseChain, ChainSpec]:
    inv = cfg.inverse
    try:
        chain, wide = widen_backbone(chain, spec, inv.backbone_hidden, inv.backbone_up, cfg.seed)
    except ValueError as err:
        raise ConfigError(f"inverse.init_widen with inverse.init={inv.init}: {err}") from None
    log.info("inverse backbone widened to %s, up %s", wide.backbone_hidden, wide.backbone_up)
    return chain, wide


@dataclass
class RunResult:
    """A finished run: its folder and the final validation metrics (the same on every rank)."""

    run_dir: Path
    metrics: dict[str, float]


def run(cfg: DictConfig, callbacks: list[Callback] | None = None) -> RunResult:
    """Train as `cfg` says; validate the exported (best) weights once more at the end."""
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = run_dir_for(cfg)
    _on_rank_zero(save_config, cfg, run_dir / "config.yaml")
    jobs = {"joint": _joint_job, "detection": _detection_job, "inversion": _inversion_job}
    job = jobs[cfg.mode](cfg, run_dir)
    # detection mode normalises with the spec's (ImageNet) statistics, not a DETR's
    data_model = "random" if cfg.mode == "detection" else cfg.model.name
    datamodule = build_datamodule(
        cfg.data, data_model, job.with_masks, fixed_shards=job.fixed_shards, seed=cfg.seed
    )
    if job.check_data is not None:
        job.check_data(datamodule.dataset("train"))
    resume = _resume_path(cfg, run_dir)
    if resume:
        check_resumable(Path(resume), job.module)
        _on_rank_zero(remove_partial_files, run_dir / "checkpoints")
    callbacks = list(callbacks or [])
    if cfg.mode != "detection":  # the analyses need an inverse chain
        callbacks += analysis_callbacks(cfg, run_dir)
    precision = cfg.trainer.precision
    if precision == "auto":
        precision = _auto_precision(cfg, job, datamodule)
    trainer = build_trainer(
        cfg, run_dir, callbacks, job.monitor, job.monitor_mode, job.fixed_shards, precision
    )
    try:
        trainer.fit(job.module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SIGTERMException:
        raise Preempted(
            f"SIGTERM at step {trainer.global_step}; saved {run_dir / 'checkpoints' / 'last.ckpt'}"
            f"; continue with the same arguments and run_name={run_dir.name} resume=last"
        ) from None
    _load_best(job.module, trainer)
    # metrics.json describes the exported (best) weights, not the last epoch
    trainer.validate(job.module, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if trainer.is_global_zero:
        job.finish(run_dir)
        if job.grid_stages:
            _save_grid(job.module, job.grid_stages, datamodule, run_dir, trainer)
        _write_metrics(metrics, run_dir)
    finish_logger(trainer.logger)
    return RunResult(run_dir, metrics)


def _auto_precision(cfg: DictConfig, job: Job, datamodule: DetectionDataModule) -> str:
    """`trainer.precision=auto` resolved for this run (lit/precision.py), and logged."""
    t = cfg.trainer
    cuda = t.accelerator in ("gpu", "cuda") or (
        t.accelerator == "auto" and torch.cuda.is_available()
    )
    single = str(t.devices) in ("1", "auto") and t.num_nodes == 1 and not cuda
    timed = cfg.mode == "inversion" and single and not t.fast_dev_run
    batch = datamodule.first_batch(cfg.data.batch_size) if timed and not cuda else None
    precision, why = resolve_precision(cfg.mode, cuda, single, job.module, batch)
    log.info("trainer.precision=auto: %s (%s)", precision, why)
    return precision


def analysis_callbacks(cfg: DictConfig, run_dir: Path) -> list[Callback]:
    """The analyses every `analysis.every_n_epochs` validation epochs (none when 0)."""
    a = cfg.analysis
    if a.every_n_epochs <= 0:
        return []
    options = Options({}, tuple(a.filters), list(a.categories) or None, a.min_area, a.batch_size)
    callback = AnalysisCallback(
        list(a.callback_analyses),
        run_dir / "analysis",
        options,
        a.every_n_epochs,
        a.callback_images,
        cfg.seed,
    )
    return [callback]


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    """The checkpoint to continue from (weights, optimiser, step, loops), if any."""
    if not cfg.resume:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if cfg.resume == "last" else Path(cfg.resume)
    if not path.is_file():
        raise ConfigError(f"resume={cfg.resume}: no checkpoint at {path}")
    return str(path)


def check_labels(dataset, detr: DetrForObjectDetection) -> None:
    """Category ids must index DETR's logits below the no-object class (HF's convention)."""
    top = max(dataset.categories, default=0)
    if top >= detr.config.num_labels:
        raise ConfigError(
            f"category id {top} in {dataset.coco_file} needs a DETR with "
            f"num_labels > {top}, but it has {detr.config.num_labels}"
        )


def _on_rank_zero(fn, *args):
    return rank_zero_only(fn)(*args)


def _load_best(module: InversionModule, trainer: pl.Trainer) -> None:
    """Export the best checkpoint's weights when there is one (not under fast_dev_run)."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        result = module.load_state_dict(state, strict=False)
        # inversion checkpoints leave out the frozen DETR; nothing else may be missing
        missing = [k for k in result.missing_keys if not k.startswith("detr.")]
        if missing or result.unexpected_keys:
            raise RuntimeError(
                f"best checkpoint {best} does not fit the module: missing "
                f"{missing[:3]}, unexpected {result.unexpected_keys[:3]}"
            )
        log.info("exporting the best checkpoint: %s", best)


@torch.no_grad()
def _save_grid(module, stages, dm: DetectionDataModule, run_dir: Path, trainer) -> None:
    """input | one column per stage, on the first validation images."""
    batch = next(iter(dm.val_dataloader())).to(module.device)
    pixels, pixel_mask = batch.pixel_values[:6], batch.pixel_mask[:6]
    module.eval()
    emb = forward_embeddings(module.detr, pixels, pixel_mask)
    columns = {"input": (pixels * module.std + module.mean).clamp(0, 1)}
    for stage in stages:
        columns[f"from {stage}"] = module.chain.reconstruct(emb, stage)
    path = run_dir / "reconstructions.png"
    reconstruction_grid(columns).savefig(path, dpi=110)
    if trainer.logger is not None and hasattr(trainer.logger, "log_image"):
        trainer.logger.log_image("val/reconstructions", [str(path)])


def _write_metrics(metrics: dict[str, float], run_dir: Path) -> None:
    """Final validation metrics, printed and kept as metrics.json in the run folder."""
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    lines = [f"  {k:<28} {v:.5f}" for k, v in sorted(metrics.items())]
    print("\n".join([f"run folder: {run_dir}", *lines]), flush=True)
