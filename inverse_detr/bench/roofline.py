"""The device's achievable matmul rate, measured when a benchmark starts (not vendor peaks).

Square `(n, n) @ (n, n)` matmuls (2·n³ FLOPs) of a few sizes per dtype, each timed as the best
of a few calls after one warm-up call, the device synchronised around each. The best size's
rate is the dtype's roofline: what a training step's TFLOP/s is compared to
(`report.achieved`). A time budget per dtype skips the larger sizes on slow devices (a CPU
without bf16 kernels), so the whole measurement stays within ~10 s on 2 CPU cores.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from inverse_detr.bench.timing import synchronize

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CPU_SIZES = (512, 1024, 2048)
GPU_SIZES = (1024, 4096, 8192)  # below ~4096 a GPU's launch overhead hides its rate
BUDGET_S = 4.0  # per dtype


@dataclass(frozen=True)
class Roofline:
    """tflops: the best rate per dtype name ("fp32", "bf16"); per_size: each size n's rate."""

    device: str
    tflops: dict[str, float]
    per_size: dict[str, dict[int, float]]
    float32_matmul_precision: str  # "highest": true fp32; "high"/"medium": TF32/bf16 inside
    seconds: float  # the measurement's wall time

    def to_json(self) -> dict:
        per_size = {k: {str(n): r for n, r in v.items()} for k, v in self.per_size.items()}
        return {
            "device": self.device,
            "tflops": self.tflops,
            "per_size": per_size,
            "float32_matmul_precision": self.float32_matmul_precision,
            "seconds": self.seconds,
        }


def measure_roofline(
    device: torch.device,
    sizes: tuple[int, ...] | None = None,
    repeats: int = 3,
    budget_s: float = BUDGET_S,
) -> Roofline:
    """TFLOP/s of square matmuls on `device` for every dtype in `DTYPES` (sizes ascending;
    None: `GPU_SIZES` on CUDA, else `CPU_SIZES`)."""
    sizes = sizes or (GPU_SIZES if device.type == "cuda" else CPU_SIZES)
    start = time.perf_counter()
    per_size = {
        name: dtype_rates(dtype, sizes, device, repeats, budget_s) for name, dtype in DTYPES.items()
    }
    return Roofline(
        device=str(device),
        tflops={name: max(rates.values()) for name, rates in per_size.items()},
        per_size=per_size,
        float32_matmul_precision=torch.get_float32_matmul_precision(),
        seconds=time.perf_counter() - start,
    )


def dtype_rates(
    dtype: torch.dtype, sizes: tuple[int, ...], device: torch.device, repeats: int, budget_s: float
) -> dict[int, float]:
    """{n: TFLOP/s} of one dtype; the next size is skipped when its calls (predicted from this
    size's time by n³) would end past `budget_s` (the first size is always measured)."""
    rates: dict[int, float] = {}
    start = time.perf_counter()
    for n, following in zip(sizes, (*sizes[1:], None), strict=True):
        seconds = best_matmul_seconds(n, dtype, device, repeats)
        rates[n] = 2 * n**3 / seconds / 1e12
        if following is not None:
            predicted = seconds * (following / n) ** 3 * (1 + repeats)
            if time.perf_counter() - start + predicted > budget_s:
                break
    return rates


def best_matmul_seconds(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """Seconds of the fastest of `repeats` `(n, n) @ (n, n)` matmuls, after one warm-up."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    out = torch.empty(n, n, dtype=dtype, device=device)
    best = math.inf
    for index in range(1 + repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        synchronize(device)
        if index:  # the first call warms up (kernel selection, allocator)
            best = min(best, time.perf_counter() - start)
    return best


def describe(roofline: dict | None) -> str:
    """One line for the log and the tables, from `Roofline.to_json()` (None: not measured)."""
    if roofline is None:
        return "matmul roofline: not measured (roofline=false)"
    sizes = sorted({int(n) for rates in roofline["per_size"].values() for n in rates})
    rates = ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in roofline["tflops"].items())
    span = f"n = {sizes[0]}–{sizes[-1]}" if len(sizes) > 1 else f"n = {sizes[0]}"
    return (
        f"matmul roofline (measured at start, square matmuls {span}, "
        f"{roofline['seconds']:.1f} s): {rates}"
    )
