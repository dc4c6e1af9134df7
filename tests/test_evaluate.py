"""`python -m inverse_detr.evaluate` on a tiny DETR and the tiny shapes world."""

import json

from inverse_detr.cli.evaluate import main

DATA_KEYS = ("data.", "out_dir")


def test_evaluate_prints_ap_and_per_category_ap(tiny_overrides, tiny_detr_dir, capsys):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    assert main([f"model={tiny_detr_dir}", *data]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("AP ") and "AP50" in out[0] and "AP75" in out[0]
    scores = json.loads(out[-1])
    assert set(scores) == {"ap", "ap50", "ap75"} and 0 <= scores["ap"] <= 1
    # the per-category lines name the shapes world's categories
    assert any("circle" in line or "square" in line for line in out[1:-1])


def test_evaluate_unloadable_model_is_exit_2(tiny_overrides, capsys):
    data = [o for o in tiny_overrides if o.startswith(DATA_KEYS)]
    assert main(["model=./no/such/dir", *data]) == 2
    assert "DETR directory not found" in capsys.readouterr().err
