"""`python -m inverse_detr.bench [config=tiny|coco_r50|layout]
[variants=[fp32,bf16+channels_last,...]] [warmup=N] [repeats=N] [device=auto|cpu|cuda]
[threads=N] [gpu_peak_tflops=X] [out=FILE.json]
[training-config key=value ...]`

Measures, side by side in one run, on one real batch:
  (a) the frozen DETR forward alone
  (b) each inverse stage's forward + backward alone, on that forward's embeddings
  (c) our training step: one frozen forward feeds every stage, as `InversionModule` trains
  (d) the reference recipe: each stage trained with its own frozen forward, one after another
  (e) the data pipeline (decode + resize + normalise) with the config's default workers
  (f) our step an epoch after the first: the stages' targets read from the embedding cache
  (p) the reference code's parallel recipe: one frozen forward, then a module per stage with
      its own Adam step and gradient clipping (the goal's reference for (f))
Lightning's `fit` trains the all-stage module exactly as `python -m inverse_detr.train` does
(its hooks and logging included; checkpoints, validation and the progress bar off), each step
a sample of (c); between its steps a round calls (a), each (b), each stage's (d) step, (p) and
(f) once.
Interleaving makes every row see the same background load; rows are medians of the rounds
after warm-up, and the goals' ratios compare rows of one run, so they hold on noisy machines.
Variants join flags with `+`: `fp32` (eager, contiguous memory), `bf16` (bf16 autocast,
Lightning's bf16-mixed), `channels_last` (the CNN backbone and the inverse ConvT stack),
`compile` (torch.compile of the inverse modules). `config=layout` times layout inversion instead
(see `inverse_detr.bench.layout`).
Other `key=value` arguments are training-config overrides (see `inverse_detr.config`).
"""

from __future__ import annotations

import gc
import os
import time
import warnings
from dataclasses import asdict, replace

import torch
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from inverse_detr.bench.cached import bench_cache, cache_report, fill, open_for
from inverse_detr.bench.config import Settings
from inverse_detr.bench.report import (
    Row,
    Variant,
    achieved,
    goals_met,
    reference_rates,
    variant_ratios,
)
from inverse_detr.bench.roofline import describe as describe_roofline
from inverse_detr.bench.roofline import measure_roofline
from inverse_detr.bench.timing import (
    PeakMemory,
    Probe,
    RoundRobin,
    machine,
    median,
    memory_kind,
)
from inverse_detr.config import ConfigError
from inverse_detr.data.batch import Batch
from inverse_detr.detectors.build import build_detr, chain_spec
from inverse_detr.lit.build import build_inversion_module
from inverse_detr.lit.datamodule import DetectionDataModule, build_datamodule
from inverse_detr.lit.inversion import InversionModule
from inverse_detr.lit.timing import fit_timed

warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
warnings.filterwarnings("ignore", message=r".*does not have many workers")
warnings.filterwarnings("ignore", message=r".*`validation_step` but have no `val_dataloader`")
# the (d) steps call training_step outside a Trainer, where self.log does nothing
warnings.filterwarnings("ignore", message=r"You are trying to `self.log\(\)`")


def autocast(device: torch.device, variant: Variant):
    """What Lightning's bf16-mixed wraps the forward in; a no-op for fp32 variants."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.bf16)


def set_memory_format(module: InversionModule, channels_last: bool) -> None:
    """Both CNNs (the frozen DETR's backbone, the inverse ConvT stack) in one memory format;
    convolutions follow their weights' format, so the activations follow."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    module.detr.model.backbone.to(memory_format=fmt)
    if module.chain.backbone is not None:
        module.chain.backbone.to(memory_format=fmt)


def build_module(cfg: DictConfig, detr, stages: tuple[str, ...], variant: Variant, cache=None):
    """An `InversionModule` as `python -m inverse_detr.train` builds it, for `stages`."""
    torch.manual_seed(cfg.seed)
    spec = replace(chain_spec(cfg.inverse, detr), stages=stages)
    module = build_inversion_module(cfg, detr, spec, compile=variant.compile, cache=cache)
    set_memory_format(module, variant.channels_last)
    return module


def measure_data(dm: DetectionDataModule, warmup: int, repeats: int) -> Row:
    """(e) Images/s of whole passes over the training split through the training DataLoader
    (its workers, pinned memory where there is a GPU); the first `warmup` passes start the
    workers and fill the page cache."""
    loader = dm.train_dataloader()
    per_image, sizes = [], []
    with PeakMemory(torch.device("cpu")) as memory:
        for _ in range(warmup + repeats):
            start, images, batches = time.perf_counter(), 0, 0
            for batch in loader:
                images, batches = images + len(batch), batches + 1
            per_image.append((time.perf_counter() - start) / max(images, 1))
            sizes.append(images / max(batches, 1))
    del loader  # stops the persistent workers before the model rows
    size = median(sizes[warmup:])
    times = [t * size for t in per_image[warmup:]]  # seconds per batch of `size` images
    what = f"data pipeline, {dm.num_workers} workers"
    return Row("e", what, "-", median(times), size, memory.mb, times)


def forward_call(module: InversionModule, batch: Batch, variant: Variant, device):
    """(a) The frozen forward pass alone (no_grad, as every training step runs it)."""

    def call() -> None:
        with autocast(device, variant):
            module.embed(batch)

    return call


def stage_call(module: InversionModule, stage: str, emb, batch: Batch, variant, device):
    """(b) One stage's loss, forward + backward, on a forward pass's embeddings `emb`."""

    def call() -> None:
        module.zero_grad(set_to_none=True)
        with autocast(device, variant):
            loss = module.stage_loss(stage, emb, batch)
        loss.backward()

    return call


def step_call(module: InversionModule, batch: Batch, variant: Variant, device):
    """(d) One step of a single-stage run as Lightning's automatic optimisation takes it: the
    module's `training_step` under the precision's autocast, backward, its optimiser's step,
    zero_grad. Without Lightning's hooks (milliseconds), (d) looks a little faster than it
    would train: the cautious side for the (d) / (c) goal."""
    optimiser = module.configure_optimizers()

    def call() -> None:
        with autocast(device, variant):
            loss = module.training_step(batch, 0)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    return call


def count_step_flops(module, batch: Batch) -> float:
    """FLOPs of one (c) or (f) step's forward and backward passes (the optimiser's are
    negligible; (f) reads its embeddings from the cache)."""
    module.train()
    with FlopCounterMode(display=False) as counter:
        emb = module.embed(batch, "train")
        torch.stack(list(module.stage_losses(emb, batch).values())).sum().backward()
    module.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def variant_probes(cfg, detr, batch: Batch, variant: Variant, device) -> tuple[list[Probe], dict]:
    """Rows (a), (b) and (d)'s per-stage steps as probes, and the modules they use."""
    stages = tuple(cfg.inverse.stages)
    modules = {"all": build_module(cfg, detr, stages, variant)}
    modules |= {stage: build_module(cfg, detr, (stage,), variant) for stage in stages}
    modules["cached"] = build_module(cfg, detr, stages, variant, cache=bench_cache(batch))
    for module in modules.values():
        module.to(device).train()
        module.configure_model()  # compiles when the variant says so, as fit would
    full = modules["all"]
    with autocast(device, variant):
        emb = full.embed(batch)
    probes = [Probe("a", "frozen forward", forward_call(full, batch, variant, device))]
    for stage in stages:
        call = stage_call(full, stage, emb, batch, variant, device)
        probes.append(Probe(f"b/{stage}", f"{stage} forward + backward", call))
    for stage in stages:
        call = step_call(modules[stage], batch, variant, device)
        probes.append(Probe(f"d/{stage}", f"{stage} step, own forward", call))
    singles = {stage: modules[stage] for stage in stages}
    what = "reference parallel recipe: one forward, a module per stage with its own Adam"
    probes.append(Probe("p", what, parallel_call(full, singles, batch, variant, device)))
    return [*probes, cached_probe(modules["cached"], emb, batch, variant, device)], modules


def parallel_call(full: InversionModule, singles: dict, batch: Batch, variant, device):
    """(p) The reference code's parallel recipe, re-expressed with our modules: one frozen
    forward per step, then each stage's own module: its loss, backward, gradient clipping to
    norm 0.1 and its own Adam step (four optimisers instead of our one fused one)."""
    optimisers = {stage: m.configure_optimizers() for stage, m in singles.items()}

    def call() -> None:
        with autocast(device, variant):
            emb = full.embed(batch)
        for stage, module in singles.items():
            with autocast(device, variant):
                loss = module.stage_loss(stage, emb, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.chain.parameters(), 0.1)
            optimisers[stage].step()
            optimisers[stage].zero_grad(set_to_none=True)

    return call


def cached_probe(module: InversionModule, emb, batch: Batch, variant, device) -> Probe:
    """(f) An all-stage step reading the cache the probe fills first (timed like (d)); the
    cache's costs go into the probe's `cache` report."""
    open_for(module, batch)
    with autocast(device, variant):
        seconds = fill(module, batch, device)
    what = "all-stage step, targets from the embedding cache"
    call = step_call(module, batch, variant, device)
    return Probe("f", what, call, cache=cache_report(module, emb, batch, seconds))


def reference_row(probes: list[Probe], variant: Variant, batch_size: int) -> Row:
    """(d) One step of every stage's own run: the per-stage probes summed, round by round."""
    parts = {p.key[2:]: median(p.times) for p in probes}
    totals = [sum(step) for step in zip(*(p.times for p in probes), strict=True)]
    peaks = [p.peak_mb for p in probes]
    mb = max(peaks) if None not in peaks else None
    what = "reference: a run per stage"
    return Row("d", what, variant.name, sum(parts.values()), batch_size, mb, totals, parts=parts)


def measure_variant(cfg, detr, batch: Batch, variant: Variant, settings, device):
    """Yields the variant's rows. Lightning's `fit` trains the all-stage module, each step a
    sample of (c); between its steps a round calls (a), each (b) and each (d) step once."""
    on_device = batch.to(device)
    probes, modules = variant_probes(cfg, detr, on_device, variant, device)
    flops = count_step_flops(modules["all"], on_device)
    step = Probe("c", "all-stage step, one forward (Lightning fit)")
    total = settings.warmup + settings.repeats

    def progress(index: int) -> None:
        print(f"  [{variant.name}] round {index + 1}/{total} done", flush=True)

    rounds = RoundRobin(step, probes, settings.warmup, device, progress)
    fit_timed(
        modules["all"], batch, rounds.before_step, rounds.after_step, variant.bf16, total, device
    )
    size = len(batch)
    for p in [*probes[: 1 + len(cfg.inverse.stages)], step]:
        row = Row(p.key, p.what, variant.name, median(p.times), size, p.peak_mb, p.times)
        yield replace(row, flops=flops) if p.key == "c" else row
    yield reference_row([p for p in probes if p.key.startswith("d/")], variant, size)
    parallel = next(p for p in probes if p.key == "p")
    times = parallel.times
    yield Row("p", parallel.what, variant.name, median(times), size, parallel.peak_mb, times)
    f = probes[-1]
    cached_flops = count_step_flops(modules["cached"], on_device)
    row = Row("f", f.what, variant.name, median(f.times), size, f.peak_mb, f.times)
    yield replace(row, flops=cached_flops, cache=f.cache)


def skip_reason(variant: Variant, device: torch.device, explicit: bool) -> str | None:
    """Why a variant is not measured here, or None."""
    if variant.compile and device.type == "cpu" and not explicit:
        return (
            "skipped: on a CPU torch.compile takes minutes and ran slower than eager here "
            "(BENCHMARKS.md); ask for it with variants=[...,compile]"
        )
    if variant.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "skipped: this GPU has no bf16"
    return None


def variant_rows(cfg, detr, batch: Batch, variant: Variant, settings, device):
    """Yields the variant's rows; one row saying why when it is skipped or fails, so that one
    variant's failure does not lose the others' rows."""
    reason = skip_reason(variant, device, settings.explicit_variants)
    if reason:
        yield Row("*", "all rows", variant.name, status=reason)
        return
    try:
        yield from measure_variant(cfg, detr, batch, variant, settings, device)
    except Exception as err:
        status = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
        yield Row("*", "remaining rows", variant.name, status=status)
    gc.collect()


def run_bench(cfg: DictConfig, settings: Settings) -> dict:
    """Every row of every variant, printed as measured; returns the JSON report (its
    "roofline": the matmul rates measured first, on the still quiet device; "flops": each
    counted row's rate against them, see `report.achieved`)."""
    device = resolve_device(settings.device)
    info = machine(device)
    roofline = measure_roofline(device).to_json() if settings.roofline else None
    print(describe_roofline(roofline), flush=True)
    dm = build_datamodule(cfg.data, cfg.model.name)
    batch = dm.first_batch(cfg.data.batch_size)
    detr = build_detr(cfg.model, cfg.seed).to(device)
    size = tuple(batch.pixel_values.shape[-2:])
    print(f"bench {settings.config} on {device}: batch {len(batch)} at {size}", flush=True)
    show = Progress()
    rows = [show(measure_data(dm, settings.warmup, settings.repeats))]
    for variant in map(Variant.parse, settings.variants):
        rows += [show(row) for row in variant_rows(cfg, detr, batch, variant, settings, device)]
    ratios = {v: variant_ratios(rows, v) for v in settings.variants}
    return {
        "config": settings.config,
        "machine": {**info, "load_average_end": os.getloadavg()},
        "settings": {**asdict(settings), "batch_size": len(batch)},
        "memory": memory_kind(device),
        "rows": [row.to_json() for row in rows],
        "ratios": ratios,
        "goals": goals_met(ratios),
        "roofline": roofline,
        "flops": achieved(rows, reference_rates(roofline, settings.gpu_peak_tflops)),
    }


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class Progress:
    """Prints each row as it is measured, with the seconds since the benchmark started."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, row: Row) -> Row:
        print(f"  {time.perf_counter() - self.start:7.1f} s  {row.describe()}", flush=True)
        return row
