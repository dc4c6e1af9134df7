"""Timing and memory measurement that holds on noisy machines: warm-up, repeats, medians.

CUDA work is asynchronous, so every timing synchronises the device before reading the clock.
Peak memory means, on CUDA, `torch.cuda.max_memory_allocated` (tensors only); on CPUs the
process's peak resident set size (Linux VmHWM, reset at the start of each measurement through
/proc/self/clear_refs): weights, activations, allocator caches and Python together.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import torch

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Probe:
    """One row: a call timed once per round (`call` None: timed by `RoundRobin` itself)."""

    key: str
    what: str
    call: Callable[[], object] | None = None
    times: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    cache: dict | None = None  # (f): what its embedding cache costs (bench/cached.py)

    def record(self, seconds: float | None, mb: float | None) -> None:
        """Keep one timing (None: a warm-up call) and the highest peak memory seen."""
        if seconds is not None:
            self.times.append(seconds)
        if mb is not None:
            self.peak_mb = max(self.peak_mb or 0.0, mb)


def call_once(probe: Probe, device: torch.device, timed: bool) -> None:
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        probe.call()
        synchronize(device)
        elapsed = time.perf_counter() - start
    probe.record(elapsed if timed else None, memory.mb)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def memory_kind(device: torch.device) -> str:
    """What `PeakMemory` reports on `device`, in words (recorded beside the numbers)."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated: peak of tensors on the GPU"
    if _can_reset_peak_rss():
        return "peak resident set size of the whole process (VmHWM, reset per row)"
    return "not measured (no resettable peak RSS on this OS)"


class PeakMemory:
    """Context manager: `.mb` is the peak memory inside the block (None when not measurable)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb: float | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif _can_reset_peak_rss():
            PROC_CLEAR_REFS.write_text("5")  # 5: reset the peak RSS to the current RSS
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif _can_reset_peak_rss():
            self.mb = _status_kb("VmHWM") / 1024


def _can_reset_peak_rss() -> bool:
    return PROC_STATUS.is_file() and PROC_CLEAR_REFS.exists() and os.access(PROC_CLEAR_REFS, 2)


def _status_kb(name: str) -> float:
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith(f"{name}:"):
            return float(line.split()[1])
    raise KeyError(name)


class RoundRobin:
    """Times each training step as the probe `step` (`before_step` … `after_step`, called by
    `inverse_detr.lit.timing.StepHooks` around each step of Lightning's `fit`) and, after each
    step, calls every other probe once: a round. The first `warmup` rounds are untimed.

    Interleaving makes every row see the same background load, so that ratios between rows
    hold on a shared machine where load comes and goes (seen here: one frozen forward took
    1.7 s, then 7.1 s twenty minutes later); load that moves within a round still shows, which
    more rounds (`repeats=`) even out.
    """

    def __init__(
        self,
        step: Probe,
        others: list[Probe],
        warmup: int,
        device: torch.device,
        on_round: Callable[[int], None] | None = None,
    ) -> None:
        self.step, self.others, self.warmup, self.device = step, others, warmup, device
        self.on_round = on_round
        self.rounds = 0
        self._memory = PeakMemory(device)
        self._start = 0.0

    def before_step(self) -> None:
        self._memory.__enter__()
        self._start = time.perf_counter()

    def after_step(self) -> None:
        synchronize(self.device)
        elapsed = time.perf_counter() - self._start
        self._memory.__exit__(None, None, None)
        timed = self.rounds >= self.warmup
        self.step.record(elapsed if timed else None, self._memory.mb)
        for probe in self.others:
            call_once(probe, self.device, timed)
        if self.on_round is not None:
            self.on_round(self.rounds)
        self.rounds += 1


def machine(device: torch.device) -> dict[str, object]:
    """The machine a measurement ran on: CPU model and cores, GPU, library versions."""
    info: dict[str, object] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "lightning": version("lightning"),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_start": os.getloadavg(),  # other processes on the machine at the start
    }
    if device.type == "cpu":
        info["cpu_bf16_kernels"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return info


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
