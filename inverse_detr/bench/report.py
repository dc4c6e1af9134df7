"""The benchmark's rows, the ratios its goals are stated in, and the tables it prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from inverse_detr.config import ConfigError

FLAGS = ("bf16", "channels_last", "compile")
# goal: (ratio key, comparison, threshold), as the issue states them
GOALS = {
    "speedup_vs_reference": (">=", 1.3),  # (d) time / (c) time, same batch
    "step_overhead": ("<=", 1.15),  # (c) / ((a) + Σ(b))
    "data_over_step": (">=", 2.0),  # (e) images/s / (c) images/s
}
# dense bf16 tensor-core peaks (vendor data sheets), matched in order against the GPU's name
GPU_BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


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
    flops: float | None = None  # (c): forward + backward FLOPs of one step

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
    """The goals' ratios within one variant (None where a row is missing)."""
    ok = {r.key: r for r in rows if r.status == "ok" and r.variant in (variant, "-")}
    a, c, d, e = (ok.get(k) for k in "acde")
    stages = [r.seconds for k, r in ok.items() if k.startswith("b/")]
    return {
        "speedup_vs_reference": d.seconds / c.seconds if c and d else None,
        "step_overhead": c.seconds / (a.seconds + sum(stages)) if a and c and stages else None,
        "data_over_step": e.images_per_s / c.images_per_s if c and e else None,
    }


def goals_met(ratios: dict[str, dict[str, float | None]]) -> dict[str, dict[str, bool | None]]:
    """Per variant and goal: True (met), False (missed) or None (not measured)."""

    def met(key: str, value: float | None) -> bool | None:
        op, threshold = GOALS[key]
        if value is None:
            return None
        return value >= threshold if op == ">=" else value <= threshold

    return {v: {k: met(k, x) for k, x in r.items()} for v, r in ratios.items()}


def gpu_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_BF16_PEAK_TFLOPS if key in name), None)


def achieved(rows: list[Row], device: torch.device, peak: float | None) -> dict[str, dict]:
    """Per variant: FLOPs per image of step (c), the FLOP rate it reached and, on a GPU, its
    fraction of the GPU's dense bf16 peak (`peak` TFLOP/s, else looked up by the GPU's name)."""
    peak = peak or gpu_peak_tflops(device)
    result = {}
    for row in rows:
        if row.key != "c" or row.status != "ok" or not row.flops:
            continue
        rate = row.flops / row.seconds / 1e12
        result[row.variant] = {
            "flops_per_image": row.flops / row.batch_size,
            "tflops_per_s": rate,
            "gpu_bf16_peak_tflops": peak,
            "fraction_of_gpu_bf16_peak": rate / peak if peak else None,
        }
    return result


def print_tables(report: dict) -> None:
    """The rows and the ratios as Markdown tables (BENCHMARKS.md pastes them)."""
    print(f"\n{report['config']} on {_machine_line(report['machine'])}")
    print(f"batch {report['settings']['batch_size']}; peak memory: {report['memory']}\n")
    print("| row | variant | s / batch | images/s | peak MB | note |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for r in report["rows"]:
        label = f"({r['key'][0]}) {r['what']}" if r["key"] != "*" else r["what"]
        if r["status"] != "ok":
            print(f"| {label} | {r['variant']} | | | | {r['status']} |")
            continue
        memory = f"{r['peak_mem_mb']:,.0f}" if r["peak_mem_mb"] else "not measured"
        parts = ", ".join(f"{k} {v:.3g} s" for k, v in r["parts"].items())
        cells = f"{r['seconds']:.4g} | {r['images_per_s']:.3g} | {memory} | {parts}"
        print(f"| {label} | {r['variant']} | {cells} |")
    print(
        "\n| variant | (d) / (c) time | (c) / ((a) + Σ(b)) | (e) / (c) images/s "
        "| TFLOP/s in (c) | of GPU bf16 peak |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    goals = " | ".join(f"goal {op} {x}" for op, x in GOALS.values())
    print(f"| | {goals} | | |")
    for variant, ratios in report["ratios"].items():
        cells = [_ratio(k, ratios[k]) for k in GOALS]
        flops = report["flops"].get(variant, {})
        rate = f"{flops['tflops_per_s']:.3g}" if flops else ""
        fraction = flops.get("fraction_of_gpu_bf16_peak")
        unknown = "no GPU" if report["machine"]["gpu"] is None else "peak unknown: gpu_peak_tflops="
        share = f"{fraction:.1%}" if fraction else f"not measured ({unknown})"
        print(f"| {variant} | {' | '.join(cells)} | {rate} | {share if flops else ''} |")


def _ratio(key: str, value: float | None) -> str:
    if value is None:
        return ""
    op, threshold = GOALS[key]
    ok = value >= threshold if op == ">=" else value <= threshold
    return f"{value:.2f} {'pass' if ok else 'MISS'}"


def _machine_line(m: dict) -> str:
    where = m["gpu"] or f"{m['cpu']}, {m['cpu_count']} cores"
    return f"{where}; torch {m['torch']}, {m['date_utc']}"
