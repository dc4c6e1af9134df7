"""`trainer.precision=auto`: bf16-mixed where it makes this machine's training step faster.

bf16 autocast ran 1.8× faster than fp32 on one of our CPUs (AVX512-BF16) and slower on another
(no AMX), so no flag can decide. On a CUDA device with bf16: bf16-mixed. On a CPU, in
`mode=inversion` on one process: the run's own training step is timed on its first training
batch in fp32 and in bf16 autocast (interleaved, medians after a warm-up), and bf16-mixed is
taken when it is ≥ `MARGIN` faster. Everything else (joint and detection modes, DDP on CPUs,
fast_dev_run): 32-true.
"""

from __future__ import annotations

import statistics
import time

import torch

from inverse_detr.data.batch import Batch
from inverse_detr.lit.inversion import InversionModule

MARGIN = 1.1  # bf16 must be this many times faster
ROUNDS = 4  # the first is a warm-up


def step_seconds(module: InversionModule, batch: Batch, bf16: bool) -> float:
    """Seconds of one forward + backward of every trained stage on `batch` (no optimiser step;
    gradients are dropped)."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        losses = module.stage_losses(module.embed(batch), batch)
    torch.stack(list(losses.values())).sum().float().backward()
    module.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def timed_precision(module: InversionModule, batch: Batch) -> tuple[str, str]:
    """bf16-mixed or 32-true for `module` on the CPU, and the timings that decided."""
    was_training = module.training
    module.eval()  # BatchNorm statistics stay as they are
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(ROUNDS):
        for bf16 in (False, True):
            seconds = step_seconds(module, batch, bf16)
            if round_:
                times[bf16].append(seconds)
    module.train(was_training)
    fp32, bf16 = (statistics.median(times[b]) for b in (False, True))
    choice = "bf16-mixed" if fp32 >= MARGIN * bf16 else "32-true"
    return choice, f"a step took {bf16:.3g} s in bf16 autocast vs {fp32:.3g} s in fp32"


def resolve_precision(
    mode: str, cuda: bool, timed: bool, module=None, batch: Batch | None = None
) -> tuple[str, str]:
    """What `trainer.precision=auto` means for this run, and why (for the log). timed: a
    one-process CPU inversion run (not fast_dev_run), whose `module` step on `batch` decides."""
    if cuda:
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "a CUDA device with bf16"
        return "32-true", "this CUDA device has no bf16"
    if not timed or mode != "inversion" or module is None or batch is None:
        return "32-true", "a CPU run that is not timed (only one-process inversion runs are)"
    return timed_precision(module, batch)
