"""The benchmark: the tiny config end to end (no timing assertions), its arguments and ratios."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from inverse_detr.bench import gpu_check, training
from inverse_detr.bench.config import parse_args
from inverse_detr.bench.report import (
    Row,
    Variant,
    achieved,
    goals_met,
    reference_rates,
    variant_ratios,
)
from inverse_detr.bench.roofline import measure_roofline
from inverse_detr.bench.training import skip_reason
from inverse_detr.cli.bench import main
from inverse_detr.config import ConfigError
from inverse_detr.inverse.chain import STAGES

VARIANTS = ("fp32", "bf16+channels_last")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    cache = tmp_path_factory.mktemp("bench-shapes")
    argv = [
        "config=tiny",
        f"variants=[{','.join(VARIANTS)}]",
        "warmup=1",
        "repeats=2",
        f"out={out}",
        f"data.cache_dir={cache}",
    ]
    with pytest.MonkeyPatch.context() as patch:  # the roofline's own test measures real sizes
        patch.setattr(training, "measure_roofline", lambda d: measure_roofline(d, sizes=(64,)))
        assert main(argv) == 0
    return json.loads(out.read_text())


def test_tiny_bench_has_every_row_with_sane_values(report):
    keys = {(r["key"], r["variant"]) for r in report["rows"]}
    expected = {("e", "-")} | {
        (key, v) for v in VARIANTS for key in ("a", *(f"b/{s}" for s in STAGES), "c", "d", "f", "p")
    }
    assert keys == expected
    for row in report["rows"]:
        assert row["status"] == "ok", row
        assert row["images_per_s"] > 0 and row["seconds"] > 0
        assert len(row["times"]) == 2
        assert row["peak_mem_mb"] is None or row["peak_mem_mb"] > 0
    reference = next(r for r in report["rows"] if r["key"] == "d")
    assert set(reference["parts"]) == set(STAGES)
    assert reference["seconds"] == pytest.approx(sum(reference["parts"].values()))
    cached = next(r for r in report["rows"] if r["key"] == "f")["cache"]
    assert cached["fields"] == ["backbone", "encoder", "decoder", "logits", "boxes"]
    sizes = cached["bytes_per_image"]
    assert sizes["float32"] == 2 * sizes["float16"] == 2 * sizes["bfloat16"] > 0
    assert cached["fill_seconds_per_batch"] > 0
    errors = cached["storage_error"]  # bf16 keeps 8 mantissa bits, fp16 11
    assert all(0 < errors["float16"][f] < errors["bfloat16"][f] < 1e-2 for f in cached["fields"])


def test_ratios_are_computed_from_the_rows(report):
    rows = {(r["key"], r["variant"]): r for r in report["rows"]}
    for variant in VARIANTS:
        ratios = report["ratios"][variant]
        a, c, d = (rows[(k, variant)]["seconds"] for k in "acd")
        stages = sum(rows[(f"b/{s}", variant)]["seconds"] for s in STAGES)
        assert ratios["speedup_vs_reference"] == pytest.approx(d / c)
        assert ratios["step_overhead"] == pytest.approx(c / (a + stages))
        data = rows[("e", "-")]["images_per_s"]
        step = rows[("c", variant)]["images_per_s"]
        assert ratios["data_over_step"] == pytest.approx(data / step)
        f, parallel = rows[("f", variant)]["seconds"], rows[("p", variant)]["seconds"]
        assert ratios["cached_same_precision"] == pytest.approx(parallel / f)
        fp32 = rows[("p", "fp32")]["seconds"]  # the reference code's own setting
        assert ratios["cached_speedup_vs_reference"] == pytest.approx(fp32 / f)
        assert set(report["goals"][variant]) == set(ratios) - {"cached_same_precision"}
    roofline = report["roofline"]["tflops"]
    assert set(report["flops"]) == set(VARIANTS)
    for variant in VARIANTS:
        assert set(report["flops"][variant]) == {"c", "f"}  # the rows whose FLOPs are counted
        # the cached step skips the frozen forward: fewer FLOPs
        assert (
            report["flops"][variant]["f"]["flops_per_image"]
            < report["flops"][variant]["c"]["flops_per_image"]
        )
        flops = report["flops"][variant]["c"]
        assert flops["flops_per_image"] > 0 and flops["tflops_per_s"] > 0
        for dtype in ("fp32", "bf16"):
            share = flops["tflops_per_s"] / roofline[dtype]
            assert flops[f"fraction_of_{dtype}_matmul"] == pytest.approx(share)


def test_unknown_config_is_a_one_line_error(capsys):
    assert main(["config=huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown bench config 'huge'; available: tiny, coco_r50, layout"


@pytest.mark.parametrize(
    "argv",
    [
        ["variants=[fp32,fp16]"],
        ["repeats=0"],
        ["device=tpu"],
        ["gpu_peak_tflops=x"],
        ["roofline=no"],
    ],
)
def test_bad_arguments_are_config_errors(argv):
    with pytest.raises(ConfigError):
        parse_args(argv)


def test_arguments_split_into_settings_and_overrides():
    settings, overrides = parse_args(["variants=[bf16+compile]", "data.batch_size=8", "repeats=4"])
    assert settings.variants == ("bf16+compile",) and settings.explicit_variants
    assert settings.repeats == 4
    assert overrides == ["data.batch_size=8"]
    assert settings.roofline and not parse_args(["roofline=false"])[0].roofline


def test_variant_flags():
    assert Variant.parse("fp32") == Variant("fp32")
    both = Variant.parse("bf16+channels_last")
    assert both.bf16 and both.channels_last and not both.compile


def test_compile_on_cpu_is_skipped_with_a_reason_unless_asked_for():
    cpu = torch.device("cpu")
    assert skip_reason(Variant.parse("compile"), cpu, explicit=False).startswith("skipped: ")
    assert skip_reason(Variant.parse("compile"), cpu, explicit=True) is None
    assert skip_reason(Variant.parse("bf16"), cpu, explicit=False) is None


def test_missing_rows_give_no_ratio_and_no_verdict():
    rows = [Row("e", "data", "-", 1.0, 4), Row("c", "step", "fp32", 2.0, 4)]
    ratios = variant_ratios(rows, "fp32")
    assert ratios["speedup_vs_reference"] is None and ratios["step_overhead"] is None
    assert ratios["data_over_step"] == pytest.approx(2.0)
    assert goals_met({"fp32": ratios})["fp32"] == {
        "speedup_vs_reference": None,
        "step_overhead": None,
        "data_over_step": True,
        "cached_speedup_vs_reference": None,
    }


def test_layout_bench_reports_both_batch_sizes_and_the_ratio(
    tiny_overrides, tiny_detr_dir, tmp_path, capsys
):
    data = [o for o in tiny_overrides if o.startswith("data.")]
    out = tmp_path / "layout.json"
    argv = ["config=layout", f"model={tiny_detr_dir}", *data, "layout.batch_size=3"]
    assert main([*argv, "warmup=0", "repeats=1", "device=cpu", f"out={out}"]) == 0
    report = json.loads(out.read_text())
    assert set(report["rows"]) == {"1", "3"}
    for row in report["rows"].values():
        assert row["seconds_per_iteration"] > 0 and row["layouts_per_second"] > 0
    one, three = report["rows"]["1"], report["rows"]["3"]
    expected = three["layouts_per_second"] / one["layouts_per_second"]
    assert report["goals"]["batch_ratio"] == pytest.approx(expected)
    assert report["goals"]["met"] is None  # a GPU goal: only reported on the CPU
    assert "batching speed-up" in capsys.readouterr().out


def test_roofline_measures_positive_finite_rates_per_dtype():
    roofline = measure_roofline(torch.device("cpu"), sizes=(32, 64), repeats=1)
    assert set(roofline.tflops) == {"fp32", "bf16"}
    for dtype, rates in roofline.per_size.items():
        assert set(rates) <= {32, 64} and 32 in rates
        assert all(math.isfinite(r) and r > 0 for r in rates.values())
        assert roofline.tflops[dtype] == max(rates.values())
    assert json.loads(json.dumps(roofline.to_json()))["per_size"]["fp32"]["32"] > 0


def test_achieved_reports_every_counted_row_against_the_matmul_rates():
    rows = [
        Row("c", "step", "bf16", seconds=2.0, batch_size=4, flops=8e12),
        Row("f", "cached step", "bf16", seconds=1.0, batch_size=4, flops=2e12),
        Row("a", "forward", "bf16", seconds=1.0, batch_size=4),  # no FLOPs counted
        Row("c", "step", "fp32", status="failed: boom", flops=1e12),
    ]
    roofline = {"tflops": {"fp32": 10.0, "bf16": 20.0}}
    result = achieved(rows, reference_rates(roofline))
    assert set(result) == {"bf16"} and set(result["bf16"]) == {"c", "f"}
    step = result["bf16"]["c"]
    assert step["flops_per_image"] == 2e12 and step["tflops_per_s"] == pytest.approx(4.0)
    assert step["fraction_of_fp32_matmul"] == pytest.approx(0.4)
    assert step["fraction_of_bf16_matmul"] == pytest.approx(0.2)
    assert result["bf16"]["f"]["fraction_of_bf16_matmul"] == pytest.approx(0.1)
    override = achieved(rows, reference_rates(roofline, bf16_override=40.0))
    assert override["bf16"]["c"]["fraction_of_bf16_matmul"] == pytest.approx(0.1)
    unmeasured = achieved(rows, reference_rates(None))["bf16"]["c"]
    assert unmeasured["fraction_of_fp32_matmul"] is None
    assert unmeasured["fraction_of_bf16_matmul"] is None


def test_gpu_check_without_cuda_says_so_and_runs_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "run_checks", lambda: pytest.fail("ran checks"))
    assert gpu_check.main(["--out", str(tmp_path / "check.json")]) == 0
    assert capsys.readouterr().out.splitlines() == [gpu_check.NO_CUDA]
    assert not (tmp_path / "check.json").exists()


def test_gpu_check_part_records_exit_code_output_and_timeout():
    done = gpu_check.run_part([sys.executable, "-c", "print('hello'); raise SystemExit(3)"], 60)
    assert done["rc"] == 3 and not done["timed_out"] and done["tail"].strip() == "hello"
    hung = gpu_check.run_part([sys.executable, "-c", "import time; time.sleep(60)"], 0.5)
    assert hung["rc"] is None and hung["timed_out"] and hung["seconds"] < 30


def test_gpu_check_reads_the_benches_and_judges_the_goals(tmp_path):
    bench = {
        "roofline": {"tflops": {"fp32": 50.0, "bf16": 700.0}},
        "rows": [{"key": "c", "variant": gpu_check.VARIANT, "images_per_s": 30.0}],
        "flops": {
            gpu_check.VARIANT: {"c": {"tflops_per_s": 350.0, "fraction_of_bf16_matmul": 0.5}}
        },
    }
    layout = {"rows": {"1": {"layouts_per_second": 1.0}, "16": {"layouts_per_second": 6.0}}}
    layout["goals"] = {"batch_ratio": 6.0}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "layout.json").write_text(json.dumps(layout))
    read = gpu_check.bench_result(tmp_path / "bench.json")
    assert read["fraction_of_bf16_matmul"] == 0.5 and read["step_images_per_s"] == 30.0
    speedup = gpu_check.layout_result(tmp_path / "layout.json")
    goals = gpu_check.goals(read, speedup)
    assert goals["step_fraction_of_bf16_matmul"]["met"] is True
    assert goals["layout_batch_speedup"] == {"value": 6.0, "target": 8.0, "met": False}
    missing = gpu_check.goals(gpu_check.bench_result(tmp_path / "absent.json"), {})
    assert all(goal["met"] is None for goal in missing.values())


def test_gpu_check_help_describes_the_parts(capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and "pytest -m gpu" in out
