"""The benchmark: the tiny config end to end (no timing assertions), its arguments and ratios."""

from __future__ import annotations

import json

import pytest
import torch

from inverse_detr.bench.config import parse_args
from inverse_detr.bench.report import Row, Variant, goals_met, variant_ratios
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
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_tiny_bench_has_every_row_with_sane_values(report):
    keys = {(r["key"], r["variant"]) for r in report["rows"]}
    expected = {("e", "-")} | {
        (key, v) for v in VARIANTS for key in ("a", *(f"b/{s}" for s in STAGES), "c", "d")
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
        assert set(report["goals"][variant]) == set(ratios)
    flops = report["flops"]["fp32"]
    assert flops["flops_per_image"] > 0 and flops["tflops_per_s"] > 0
    if report["machine"]["gpu"] is None:
        assert flops["fraction_of_gpu_bf16_peak"] is None  # "not measured" without a GPU


def test_unknown_config_is_a_one_line_error(capsys):
    assert main(["config=huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown bench config 'huge'; available: tiny, coco_r50, layout"


@pytest.mark.parametrize(
    "argv", [["variants=[fp32,fp16]"], ["repeats=0"], ["device=tpu"], ["gpu_peak_tflops=x"]]
)
def test_bad_arguments_are_config_errors(argv):
    with pytest.raises(ConfigError):
        parse_args(argv)


def test_arguments_split_into_settings_and_overrides():
    settings, overrides = parse_args(["variants=[bf16+compile]", "data.batch_size=8", "repeats=4"])
    assert settings.variants == ("bf16+compile",) and settings.explicit_variants
    assert settings.repeats == 4
    assert overrides == ["data.batch_size=8"]


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
