"""`python -m inverse_detr.bench.gpu_check [--out FILE.json]` (`make gpu-check`): the GPU
checks in one go, ≤ 5 minutes on one CUDA device; without one it says so and exits 0.

Each part runs as its own subprocess with a timeout, so one failure or hang does not lose the
others; each records its command, exit code, wall time and the tail of its output:
  bench   the `coco_r50` bench, variant `bf16+channels_last`, on cuda (its step's TFLOP/s as a
          fraction of the bf16 matmul rate the bench measures at its start)
  layout  the layout-inversion bench, B = 1 against B = `layout.batch_size` (16), on cuda
  train   a 1-GPU training smoke run: bf16-mixed, torch.compile, 20 steps, CSV logger
  pytest  `pytest -m gpu` (tests/test_gpu.py)
Writes one JSON (default runs/gpu-check.json): the machine, each part's result and the goals:
the step reaches ≥ 40 % of the measured bf16 matmul rate; batched layout inversion at B = 16
reaches ≥ 8 × the layouts/s of B = 1. Exit code 0 when every part exited 0 (goals missed or
not, they are in the JSON and the summary), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from inverse_detr.config import REPO_ROOT

VARIANT = "bf16+channels_last"
STEP_GOAL = 0.40  # of the measured bf16 matmul rate
LAYOUT_GOAL = 8.0  # B = 16 layouts/s over B = 1's
TAIL_CHARS = 2000
NO_CUDA = "gpu-check needs a CUDA device; none is available here, nothing was run"


def part_commands(scratch: Path) -> dict[str, tuple[list[str], int]]:
    """{part: (command, timeout in s)}; the timeouts add up to 5 minutes. The bench's shapes
    world (used only where ../shared/data/coco128 is absent) is cut to 64 images so that
    generating it and the data row's passes over it stay short."""
    py = sys.executable
    bench = [py, "-m", "inverse_detr.bench", "config=coco_r50", "device=cuda"]
    bench += [f"variants=[{VARIANT}]", "repeats=3", f"out={scratch / 'bench.json'}"]
    bench += ["data.shapes.train=64", "data.shapes.val=16"]
    layout = [py, "-m", "inverse_detr.bench", "config=layout", "device=cuda"]
    layout += [f"out={scratch / 'layout.json'}"]
    train = [py, "-m", "inverse_detr.train", "trainer=gpu", "trainer.devices=1"]
    train += ["trainer.precision=bf16-mixed", "trainer.compile=true", "trainer.max_steps=20"]
    train += ["logger=csv", "analysis.every_n_epochs=0", f"out_dir={scratch}", "run_name=gpu-smoke"]
    pytest = [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    return {
        "bench": (bench, 100),
        "layout": (layout, 40),
        "train": (train, 80),
        "pytest": (pytest, 80),
    }


def run_part(command: list[str], timeout: float) -> dict:
    """Run `command` in the repository root in its own process group, killed whole (DataLoader
    workers, DDP ranks) after `timeout` s; rc None when it timed out."""
    start, timed_out = time.perf_counter(), False
    with subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
    return {
        "command": command,
        "rc": None if timed_out else proc.returncode,
        "timed_out": timed_out,
        "seconds": round(time.perf_counter() - start, 1),
        "tail": (output or "")[-TAIL_CHARS:],
    }


def bench_result(path: Path) -> dict:
    """From the bench's JSON: the measured matmul rates and the variant's step (c) rate."""
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    step = report["flops"].get(VARIANT, {}).get("c", {})
    rows = [r for r in report["rows"] if r["key"] == "c" and r["variant"] == VARIANT]
    return {
        "roofline_tflops": (report.get("roofline") or {}).get("tflops"),
        "step_images_per_s": rows[0]["images_per_s"] if rows else None,
        "step_tflops_per_s": step.get("tflops_per_s"),
        "fraction_of_bf16_matmul": step.get("fraction_of_bf16_matmul"),
    }


def layout_result(path: Path) -> dict:
    """From the layout bench's JSON: layouts/s per B and the speed-up of the largest B."""
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    rates = {b: row["layouts_per_second"] for b, row in report["rows"].items()}
    return {"layouts_per_second": rates, "batch_speedup": report["goals"]["batch_ratio"]}


def goals(bench: dict, layout: dict) -> dict[str, dict]:
    """Each goal's measured value, target and verdict (None: not measured)."""

    def goal(value: float | None, target: float) -> dict:
        return {"value": value, "target": target, "met": None if value is None else value >= target}

    return {
        "step_fraction_of_bf16_matmul": goal(bench.get("fraction_of_bf16_matmul"), STEP_GOAL),
        "layout_batch_speedup": goal(layout.get("batch_speedup"), LAYOUT_GOAL),
    }


def machine() -> dict:
    """The GPU and the library versions the checks ran with."""
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": sys.version.split()[0],
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_checks() -> dict:
    """Every part in turn, then the results read back from the benches' JSON and the goals."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        scratch = Path(tmp)
        parts = {}
        for name, (command, timeout) in part_commands(scratch).items():
            print(f"gpu-check: {name} (≤ {timeout} s) ...", flush=True)
            parts[name] = run_part(command, timeout)
            print(f"  {_verdict(parts[name])}", flush=True)
        parts["bench"]["result"] = bench_result(scratch / "bench.json")
        parts["layout"]["result"] = layout_result(scratch / "layout.json")
    met = goals(parts["bench"]["result"], parts["layout"]["result"])
    return {"machine": machine(), "parts": parts, "goals": met}


def _verdict(part: dict) -> str:
    if part["timed_out"]:
        return f"TIMED OUT after {part['seconds']} s"
    status = "ok" if part["rc"] == 0 else f"FAILED (rc {part['rc']})"
    return f"{status} in {part['seconds']} s"


def main(argv: list[str] | None = None) -> int:
    """Parse `--out`; run the checks where CUDA is available, else say why not (exit 0)."""
    parser = argparse.ArgumentParser(
        prog="python -m inverse_detr.bench.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/gpu-check.json", help="the JSON to write")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    report = run_checks()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for name, goal in report["goals"].items():
        print(f"goal {name}: {goal['value']} (target ≥ {goal['target']}): {goal['met']}")
    print(f"wrote {out}")
    return 0 if all(p["rc"] == 0 for p in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
