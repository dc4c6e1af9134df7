"""trainer.precision=auto: bf16-mixed only where a timed step says it is faster."""

from __future__ import annotations

import logging

import pytest

from inverse_detr.config import load_config
from inverse_detr.lit import precision
from inverse_detr.lit.run import run


@pytest.mark.parametrize(
    ("fp32", "bf16", "expected"),
    [(2.0, 1.0, "bf16-mixed"), (1.0, 2.0, "32-true"), (1.05, 1.0, "32-true")],
)
def test_the_faster_precision_wins_by_a_margin(monkeypatch, fp32, bf16, expected):
    seconds = {False: fp32, True: bf16}
    monkeypatch.setattr(precision, "step_seconds", lambda module, batch, b: seconds[b])

    class Module:
        training = True

        def eval(self):
            self.training = False

        def train(self, mode=True):
            self.training = mode

    module = Module()
    choice, why = precision.resolve_precision("inversion", False, True, module, object())
    assert choice == expected and f"{fp32:.3g} s in fp32" in why
    assert module.training  # put back as it was


def test_untimed_runs_keep_fp32_on_a_cpu():
    for mode, timed in (("joint", True), ("detection", True), ("inversion", False)):
        assert precision.resolve_precision(mode, False, timed, object(), object())[0] == "32-true"


def test_an_auto_run_times_its_step_and_trains(tiny_overrides, caplog):
    overrides = [
        o for o in tiny_overrides if not o.startswith(("trainer.fast_dev_run", "trainer.p"))
    ]
    cfg = load_config([*overrides, "trainer.precision=auto", "trainer.max_steps=1"])
    with caplog.at_level(logging.INFO, logger="inverse_detr.train"):
        result = run(cfg)
    said = [r.message for r in caplog.records if "trainer.precision=auto" in r.message]
    assert len(said) == 1 and "in bf16 autocast vs" in said[0]
    assert cfg.trainer.precision == "auto"  # the run's choice is not written into its config
    assert result.metrics["val/loss"] > 0
