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
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Probe:
    """One row's call; `run_rounds` times it once per round."""

    key: str
    what: str
    call: Callable[[], object]
    times: list[float] = field(default_factory=list)
    peak_mb: float | None = None


def run_rounds(
    probes: list[Probe],
    warmup: int,
    repeats: int,
    device: torch.device,
    on_round: Callable[[int], None] | None = None,
) -> None:
    """Round-robin: every round calls each probe once, the first `warmup` rounds untimed.

    Interleaving makes every row see the same background load, so ratios between rows hold
    on a shared machine where load comes and goes within minutes (measured here: a frozen
    forward timed 1.7 s and 7.1 s ten minutes apart).
    """
    for index in range(warmup + repeats):
        for probe in probes:
            with PeakMemory(device) as memory:
                start = time.perf_counter()
                probe.call()
                synchronize(device)
                elapsed = time.perf_counter() - start
            if index >= warmup:
                probe.times.append(elapsed)
            if memory.mb is not None:
                probe.peak_mb = max(probe.peak_mb or 0.0, memory.mb)
        if on_round is not None:
            on_round(index)


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


class StepTimer(Callback):
    """Seconds of each Lightning training step: training_step, backward, optimiser step and
    logging, as `fit` runs them (the batch's transfer to the device comes before the start)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter() - self._start)


def machine(device: torch.device) -> dict[str, object]:
    """The machine a measurement ran on: CPU model and cores, GPU, library versions."""
    import lightning
    import transformers

    info: dict[str, object] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
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
