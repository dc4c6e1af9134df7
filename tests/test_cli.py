"""The commands' shell: `--help` on every command, the `inverse-detr` dispatcher, exit codes."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from inverse_detr.cli import COMMANDS
from inverse_detr.cli import main as inverse_detr_main
from inverse_detr.cli.shell import config_groups

REPO = Path(__file__).resolve().parents[1]


NO_CONFIG = {"ship", "average"}  # commands that take paths, not the training config


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_prints_usage_with_the_config_groups(command, capsys):
    main = importlib.import_module(f"inverse_detr.cli.{command}").main
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert f"inverse_detr.{command}" in out or f"inverse_detr {command}" in out  # its synopsis
    if command not in NO_CONFIG:
        assert "data=coco|shapes" in out and "trainer=" in out and "experiment=" in out


def test_config_groups_are_read_from_configs():
    groups = config_groups()
    assert groups["data"] == ["coco", "shapes", "shapes_first"]
    assert {"model", "inverse", "trainer", "experiment"} <= set(groups)


def test_inverse_detr_help_lists_the_commands(capsys):
    assert inverse_detr_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS)


def test_inverse_detr_dispatches_and_refuses_unknown_commands(capsys):
    assert inverse_detr_main(["evaluate", "--help"]) == 0
    assert "inverse_detr.evaluate" in capsys.readouterr().out
    assert inverse_detr_main(["trian"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'trian'; commands: train")


def test_a_bad_override_is_one_error_line_and_exit_2(capsys):
    from inverse_detr.cli.evaluate import main

    assert main(["data.batch_size=many"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "data.batch_size" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "inverse_detr.train", "--help"],
        ["-m", "inverse_detr", "analyze", "--help"],
        ["-m", "inverse_detr.bench", "-h"],
    ],
    ids=["python -m inverse_detr.train", "python -m inverse_detr analyze", "bench -h"],
)
def test_python_m_entry_points_run_the_commands(argv):
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Config groups" in done.stdout


def test_ship_stores_fp16_weights_that_load_as_fp32(tiny_detr_dir, tmp_path, capsys):
    import torch

    from inverse_detr.cli.ship import main as ship_main
    from inverse_detr.detectors.detr import load_detr

    target = tmp_path / "shipped"
    assert ship_main([str(tiny_detr_dir), str(target)]) == 0
    assert "re-measure" in capsys.readouterr().out
    full = (tiny_detr_dir / "model.safetensors").stat().st_size
    assert (target / "model.safetensors").stat().st_size < 0.6 * full
    before, after = load_detr(tiny_detr_dir), load_detr(target)
    assert next(after.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            after(pixel_values=x).logits, before(pixel_values=x).logits, atol=2e-2, rtol=0
        )
    assert ship_main([str(tiny_detr_dir)]) == 2  # one path: a usage error, one line


def test_ship_stores_a_classic_detector_in_fp16(tmp_path, capsys):
    import torch

    from inverse_detr.cli.ship import main as ship_main
    from inverse_detr.detectors.classic import ClassicDetector, ClassicSpec, build_classic
    from inverse_detr.detectors.loading import load_detector, save_detector

    spec = ClassicSpec("fcos", {1: "a", 2: "b"}, image_size=64)
    source = save_detector(ClassicDetector(build_classic(spec), spec), tmp_path / "run", False)
    assert ship_main([str(source), str(tmp_path / "shipped")]) == 0
    full = (source / "model.safetensors").stat().st_size
    assert (tmp_path / "shipped" / "model.safetensors").stat().st_size < 0.6 * full
    shipped = load_detector(tmp_path / "shipped")
    assert shipped.name == "fcos" and {p.dtype for p in shipped.module.parameters()} == {
        torch.float32
    }
