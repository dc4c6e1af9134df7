"""The benchmark's rows, the ratios its goals are stated in, and the tables it prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from inverse_detr.bench.roofline import DTYPES
from inverse_detr.bench.roofline import describe as describe_roofline
from inverse_detr.config import ConfigError

FLAGS = ("bf16", "channels_last", "compile")
# goal: (ratio key, comparison, threshold), as the issue states them
GOALS = {
    "speedup_vs_reference": (">=", 1.3),  # (d) time / (c) time, same batch
    "step_overhead": ("<=", 1.15),  # (c) / ((a) + Σ(b))
    "data_over_step": (">=", 2.0),  # (e) images/s / (c) images/s
    # (p) time / (f) time: an epoch after the first vs the reference code's parallel recipe
    "cached_speedup_vs_reference": (">=", 1.5),
}


@dataclass(frozen=True)
class Variant:
    """Flags joined by `+` (`bf16+channels_last`); `fp32` alone is the plain baseline."""

    name: str
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def parse(cls, name: str) -> Variant:
        flags = name.split("+")
        if name != "fp32" and (set(flags) - set(FLAGS) or len(set(flags)) != len(flags)):
            allowed = ", ".join(("fp32", *FLAGS))
            raise ConfigError(f"unknown variant '{name}'; join flags with '+' from: {allowed}")
        return cls(name, *(flag in flags for flag in FLAGS))


@dataclass
class Row:
    """One measurement. seconds: median per batch of `batch_size` images; times: every repeat."""

    key: str  # a, b/<stage>, c, d, e; * for a variant that did not run
    what: str
    variant: str
    seconds: float | None = None
    batch_size: float = 0
    peak_mem_mb: float | None = None
    times: list[float] = field(default_factory=list)
    status: str = "ok"  # ok | skipped: why | failed: why
    parts: dict[str, float] = field(default_factory=dict)  # (d): seconds per stage's run
    flops: float | None = None  # forward + backward FLOPs of one step ((c); None: not counted)
    cache: dict | None = None  # (f): the cache's bytes per image, fill time, storage error

    @property
    def images_per_s(self) -> float | None:
        return self.batch_size / self.seconds if self.seconds else None

    def to_json(self) -> dict:
        return {**asdict(self), "images_per_s": self.images_per_s}

    def describe(self) -> str:
        label = f"[{self.variant}] ({self.key}) {self.what}"
        if self.status != "ok":
            return f"{label}: {self.status}"
        memory = f", peak {self.peak_mem_mb:,.0f} MB" if self.peak_mem_mb else ""
        return f"{label}: {self.seconds:.4f} s/batch, {self.images_per_s:.2f} images/s{memory}"


def variant_ratios(rows: list[Row], variant: str) -> dict[str, float | None]:
    """The goals' ratios within one variant (None where a row is missing), except the cached
    step's: (f) of this variant against (p) as the reference code runs it, in fp32 (this
    variant's (p) when fp32 was not measured); `cached_same_precision` is (p) / (f) within the
    variant (no goal)."""
    ok = {r.key: r for r in rows if r.status == "ok" and r.variant in (variant, "-")}
    a, c, d, e, f, p = (ok.get(k) for k in "acdefp")
    fp32 = [r for r in rows if r.status == "ok" and r.key == "p" and r.variant == "fp32"]
    reference = fp32[0] if fp32 else p
    stages = [r.seconds for k, r in ok.items() if k.startswith("b/")]
    return {
        "speedup_vs_reference": d.seconds / c.seconds if c and d else None,
        "step_overhead": c.seconds / (a.seconds + sum(stages)) if a and c and stages else None,
        "data_over_step": e.images_per_s / c.images_per_s if c and e else None,
        "cached_speedup_vs_reference": reference.seconds / f.seconds if reference and f else None,
        "cached_same_precision": p.seconds / f.seconds if p and f else None,
    }


def goals_met(ratios: dict[str, dict[str, float | None]]) -> dict[str, dict[str, bool | None]]:
    """Per variant and goal: True (met), False (missed) or None (not measured)."""

    def met(key: str, value: float | None) -> bool | None:
        op, threshold = GOALS[key]
        if value is None:
            return None
        return value >= threshold if op == ">=" else value <= threshold

    return {v: {k: met(k, x) for k, x in r.items() if k in GOALS} for v, r in ratios.items()}


def reference_rates(roofline: dict | None, bf16_override: float = 0.0) -> dict[str, float | None]:
    """The matmul rates (TFLOP/s) `achieved` divides by, per dtype name: the measured
    roofline's (`Roofline.to_json()`, None: not measured), bf16's replaced by `bf16_override`
    when > 0 (`gpu_peak_tflops=`, e.g. a vendor peak)."""
    rates = dict(roofline["tflops"]) if roofline else {}
    if bf16_override > 0:
        rates["bf16"] = bf16_override
    return {dtype: rates.get(dtype) for dtype in DTYPES}


def achieved(rows: list[Row], reference: dict[str, float | None]) -> dict[str, dict[str, dict]]:
    """The FLOP rate of every measured row whose FLOPs were counted (`flops` set: step (c),
    any row added later the same way), against the matmul rates `reference` (TFLOP/s per
    dtype name, None where not measured: see `reference_rates`). JSON shape:
    {variant: {row key: {"flops_per_image", "tflops_per_s", "fraction_of_fp32_matmul",
    "fraction_of_bf16_matmul"}}}, a fraction None where its rate is unknown."""
    result: dict[str, dict[str, dict]] = {}
    for row in rows:
        if row.status != "ok" or not row.flops or not row.seconds:
            continue
        rate = row.flops / row.seconds / 1e12
        entry = {"flops_per_image": row.flops / row.batch_size, "tflops_per_s": rate}
        for dtype in DTYPES:
            peak = reference.get(dtype)
            entry[f"fraction_of_{dtype}_matmul"] = rate / peak if peak else None
        result.setdefault(row.variant, {})[row.key] = entry
    return result


def print_tables(report: dict) -> None:
    """The rows, the ratios and the FLOP rates as Markdown tables (BENCHMARKS.md pastes them)."""
    print(f"\n{report['config']} on {_machine_line(report['machine'])}")
    print(f"batch {report['settings']['batch_size']}; peak memory: {report['memory']}")
    print(describe_roofline(report.get("roofline")))
    override = report["settings"].get("gpu_peak_tflops")
    if override:
        print(f"bf16 fractions against gpu_peak_tflops={override:g}, not the measured rate")
    _print_rows(report["rows"])
    _print_ratios(report["ratios"])
    _print_cache(report["rows"])
    _print_flops(report["flops"])


def _print_rows(rows: list[dict]) -> None:
    print("\n| row | variant | s / batch | images/s | peak MB | note |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for r in rows:
        label = f"({r['key'][0]}) {r['what']}" if r["key"] != "*" else r["what"]
        if r["status"] != "ok":
            print(f"| {label} | {r['variant']} | | | | {r['status']} |")
            continue
        memory = f"{r['peak_mem_mb']:,.0f}" if r["peak_mem_mb"] else "not measured"
        parts = ", ".join(f"{k} {v:.3g} s" for k, v in r["parts"].items())
        cells = f"{r['seconds']:.4g} | {r['images_per_s']:.3g} | {memory} | {parts}"
        print(f"| {label} | {r['variant']} | {cells} |")


def _print_cache(rows: list[dict]) -> None:
    """Row (f)'s cache: bytes per image by storage dtype, fill time, half-storage error."""
    cached = [r for r in rows if r.get("cache")]
    if not cached:
        return
    print("\n| variant | KB / image fp32, fp16, bf16 | fill s / image | fp16 error | bf16 error |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in cached:
        c = r["cache"]
        sizes = ", ".join(f"{c['bytes_per_image'][d] / 1e3:.1f}" for d in c["bytes_per_image"])
        fill = c["fill_seconds_per_batch"] / c["batch_size"]
        worst = {d: max(e.values()) for d, e in c["storage_error"].items()}
        row = f"{sizes} | {fill:.4g} | {worst['float16']:.2e} | {worst['bfloat16']:.2e}"
        print(f"| {r['variant']} | {row} |")
    print("(errors: the largest relative RMS error of a stored field, ‖x − half(x)‖ / ‖x‖)")


def _print_ratios(ratios: dict[str, dict[str, float | None]]) -> None:
    print(
        "\n| variant | (d) / (c) time | (c) / ((a) + Σ(b)) | (e) / (c) images/s "
        "| (p, fp32) / (f) time | (p) / (f), same variant |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| | {' | '.join(f'goal {op} {x}' for op, x in GOALS.values())} | |")
    for variant, values in ratios.items():
        same = values.get("cached_same_precision")
        cells = [_ratio(k, values[k]) for k in GOALS] + [f"{same:.2f}" if same else ""]
        print(f"| {variant} | {' | '.join(cells)} |")


def _print_flops(flops: dict[str, dict[str, dict]]) -> None:
    print("\n| variant | row | GFLOP / image | TFLOP/s | of fp32 matmul | of bf16 matmul |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for variant, by_row in flops.items():
        for key, f in by_row.items():
            shares = [f[f"fraction_of_{dtype}_matmul"] for dtype in DTYPES]
            cells = " | ".join("not measured" if x is None else f"{x:.1%}" for x in shares)
            rate = f"{f['flops_per_image'] / 1e9:.4g} | {f['tflops_per_s']:.3g}"
            print(f"| {variant} | ({key}) | {rate} | {cells} |")


def _ratio(key: str, value: float | None) -> str:
    if value is None:
        return ""
    op, threshold = GOALS[key]
    ok = value >= threshold if op == ">=" else value <= threshold
    return f"{value:.2f} {'pass' if ok else 'MISS'}"


def _machine_line(m: dict) -> str:
    where = m["gpu"] or f"{m['cpu']}, {m['cpu_count']} cores"
    return f"{where}; torch {m['torch']}, {m['date_utc']}"
