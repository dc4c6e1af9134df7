"""`python -m inverse_detr.analyze` and the analysis callback of training runs, on tiny models."""

from __future__ import annotations

import json

import pytest

from inverse_detr.cli import analyze as analyze_command
from inverse_detr.cli.analyze import main
from inverse_detr.config import load_config, save_config
from inverse_detr.export import export_inverter
from inverse_detr.lit.run import run

FIGURES = {
    "stage_mse.png",
    "stage_reconstructions.png",
    "cross_layer_mse.png",
    "cross_layer_grid.png",
    "color_pairwise.png",
    "color_hue.png",
    "color_saturation.png",
    "color_ap.png",
    "color_reconstructions.png",
}


@pytest.fixture
def data_overrides(tiny_overrides) -> list[str]:
    keep = ("data.", "out_dir")
    return [o for o in tiny_overrides if o.startswith(keep)]


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_inverter, tiny_detr_dir):
    inv = tiny_inverter
    out = tmp_path_factory.mktemp("tiny-run") / "export"
    return export_inverter(inv.chain, inv.spec, inv.transform, str(tiny_detr_dir), out)


@pytest.fixture
def tiny_run(tmp_path, tiny_inverter, tiny_detr_dir, data_overrides):
    """A training run folder: export/ and the resolved config.yaml, whose data section is the
    tiny world's (not the default one)."""
    inv, run = tiny_inverter, tmp_path / "tiny-run"
    export_inverter(inv.chain, inv.spec, inv.transform, str(tiny_detr_dir), run / "export")
    save_config(load_config([*data_overrides, "run_name=tiny-run"]), run / "config.yaml")
    return run


def test_analyze_writes_figures_metrics_and_a_report(tiny_export, data_overrides, tmp_path, capsys):
    out = tmp_path / "report"
    args = [f"ckpt={tiny_export}", "analysis.images=4", f"analysis.out={out}", *data_overrides]
    assert main(args) == 0
    assert {p.name for p in out.glob("*.png")} >= FIGURES
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"stages", "cross_layer", "color"}
    assert metrics["stages"]["images"] == 4
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert "Colour perturbation" in page
    assert "analysis/backbone/mse" in capsys.readouterr().out


def test_analyze_runs_only_the_chosen_analyses(tiny_export, data_overrides, tmp_path):
    out = tmp_path / "report"
    args = [f"ckpt={tiny_export}", "analyses=[cross_layer]", f"analysis.out={out}"]
    assert main([*args, "analysis.images=2", *data_overrides]) == 0
    assert set(json.loads((out / "metrics.json").read_text())) == {"cross_layer"}
    assert not (out / "stage_mse.png").exists()


@pytest.mark.parametrize(
    ("analysis", "stages_key", "figure", "title"),
    [
        (
            "spectrum",
            "error_power",
            "spectrum_kept.png",
            "Reconstruction error by spatial frequency",
        ),
        ("interiors", "rows", "interiors_kept.png", "Inside the objects: pattern or colour"),
    ],
)
def test_analyze_writes_an_extra_analysis(
    tiny_export, data_overrides, tmp_path, analysis, stages_key, figure, title
):
    out = tmp_path / "report"
    args = [f"ckpt={tiny_export}", f"analyses=[{analysis}]", f"analysis.out={out}"]
    assert main([*args, "analysis.images=2", *data_overrides]) == 0
    record = json.loads((out / "metrics.json").read_text())[analysis]
    assert set(record[stages_key]) == {"backbone", "encoder", "decoder", "head"}
    assert (out / figure).exists()
    assert title in (out / "report.html").read_text()
    if analysis == "interiors":
        assert "background" in record["rows"]["backbone"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt=/nonexistent/run"], "no inverter.json"),
        (["analysis.min_area=1.0"], "no object of any category covers"),
        (["analyses=[colour]"], "config key 'analysis.analyses' has ['colour']"),
    ],
)
def test_bad_requests_are_one_line_errors(tiny_export, data_overrides, args, message, capsys):
    argv = [f"ckpt={tiny_export}", "analysis.images=2", *data_overrides, *args]
    assert main(argv) == 2
    err = capsys.readouterr().err  # progress bars, then the error line
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in err


def test_a_single_colour_filter_is_one_config_error_line(
    tiny_export, data_overrides, tmp_path, capsys
):
    out = [f"ckpt={tiny_export}", "analysis.images=2", f"analysis.out={tmp_path / 'r'}"]
    assert main([*out, *data_overrides, "analysis.filters=[none]"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "'analysis.filters' is ['none']" in errors[0] and "shift120" in errors[0]


def test_analyze_takes_the_data_settings_of_a_run_folder(
    tiny_run, tiny_export, shapes_cache, monkeypatch, capsys
):
    seen = []
    # the config analyze would run on
    monkeypatch.setattr(analyze_command, "analyze", lambda cfg, *rest: seen.append(cfg))
    for ckpt in (tiny_run, tiny_run / "export"):
        assert main([f"ckpt={ckpt}"]) == 0
        assert seen[-1].data.cache_dir == str(shapes_cache) and seen[-1].data.shapes.size == 64
        assert seen[-1].data.image_size == [64, 64] and seen[-1].data.shapes.val == 4
    said = capsys.readouterr().out
    assert said.count(f"data settings from {tiny_run / 'config.yaml'}") == 2
    # a data key on the command line wins over the run's, the rest still comes from the run
    assert main([f"ckpt={tiny_run}", "data.shapes.size=96"]) == 0
    assert seen[-1].data.shapes.size == 96 and seen[-1].data.cache_dir == str(shapes_cache)
    assert "data.shapes.size" in capsys.readouterr().out
    # a data group on the command line replaces the run's section; an export alone: the default
    default = load_config([]).data
    for args in ([f"ckpt={tiny_run}", "data=shapes"], [f"ckpt={tiny_export}"]):
        assert main(args) == 0 and seen[-1].data == default


def test_analyze_of_a_run_folder_reads_the_runs_world(tiny_run, tmp_path):
    out = tmp_path / "report"
    assert main([f"ckpt={tiny_run}", "analyses=[stages]", f"analysis.out={out}"]) == 0
    # analysis.images=64 by default: the run's tiny world has 4 val images, the default 200
    assert json.loads((out / "metrics.json").read_text())["stages"]["images"] == 4


def test_training_runs_the_analysis_callback(tiny_overrides):
    overrides = [
        o for o in tiny_overrides if not o.startswith(("logger", "trainer.fast", "analysis"))
    ]
    cfg = load_config(
        [
            *overrides,
            "logger=csv",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "analysis.every_n_epochs=2",
            "analysis.callback_images=3",
            "analysis.callback_analyses=[stages,cross_layer,color,spectrum]",
        ]
    )
    run_dir = run(cfg).run_dir
    # every second validation epoch, and the exported weights' final validation
    assert sorted(p.name for p in (run_dir / "analysis").iterdir()) == ["epoch-001", "final"]
    epoch = run_dir / "analysis" / "epoch-001"
    assert (epoch / "report.html").is_file() and {p.name for p in epoch.glob("*.png")} >= FIGURES
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert (epoch / "spectrum_kept.png").is_file()
    for key in (
        "analysis/backbone/mse",
        "analysis/encoder_layer0/mse",
        "analysis/color_ap/red",
        "analysis/backbone/spectrum_error_band4",
    ):
        assert key in header


def test_config_lists_the_same_analyses():
    from inverse_detr.analysis.suite import ANALYSES
    from inverse_detr.config import ANALYSES as CONFIG_ANALYSES

    assert CONFIG_ANALYSES == ANALYSES
