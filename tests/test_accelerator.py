"""evaluate, analyze and invert_layout run on the GPU when one is present, unless the command
line names the accelerator: `trainer.accelerator` alone is the training default (cpu)."""

import pytest
import torch

from inverse_detr.analysis import setup
from inverse_detr.cli import analyze, evaluate, invert_layout
from inverse_detr.cli.device import inference_device
from inverse_detr.config import ConfigError, load_config


def device_for(args: list[str]) -> torch.device:
    return inference_device(load_config(args), args)


@pytest.mark.parametrize(
    ("args", "cuda", "expected"),
    [
        ([], True, "cuda"),
        ([], False, "cpu"),
        (["trainer.accelerator=cpu"], True, "cpu"),
        (["trainer=cpu"], True, "cpu"),
        (["trainer=ddp_cpu"], True, "cpu"),
        (["trainer.accelerator=gpu"], True, "cuda"),
        (["trainer.accelerator=cuda"], True, "cuda"),
        (["trainer=gpu"], True, "cuda"),
        (["trainer.accelerator=auto"], False, "cpu"),
        (["trainer.max_epochs=3"], True, "cuda"),  # other trainer keys do not pick a device
        (["experiment=coco"], False, "cpu"),  # its trainer=gpu is for training
    ],
)
def test_inference_device(monkeypatch, args, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert device_for(args) == torch.device(expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trainer=gpu"], r"'trainer.accelerator' is 'gpu' but no CUDA device is available"),
        (["trainer.accelerator=tpu"], r"'trainer.accelerator' is 'tpu'; .*: cpu, gpu, cuda, auto"),
    ],
)
def test_an_accelerator_that_cannot_be_obeyed_is_a_one_line_error(monkeypatch, args, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=message) as info:
        device_for(args)
    assert "\n" not in str(info.value)


class Stop(ConfigError):
    """Raised by the stand-ins below once the device is known: the command stops there."""


def _stop(*args, **kwargs):
    raise Stop("stopped once the device was chosen")


def _record(devices: list):
    """A stand-in for a loader called as (what, device) or (what, device=...): records, stops."""

    def stand_in(what, device=None, **kwargs):
        devices.append(torch.device(device))
        _stop()

    return stand_in


def _stop_where_the_device_is_used(command, monkeypatch, devices: list) -> list[str]:
    """Patch `command` to record its device and stop; returns the arguments it needs."""
    if command is evaluate:
        monkeypatch.setattr(evaluate, "load_detector", _record(devices))
        return ["model=checkpoints/shapes-detr"]
    if command is analyze:
        monkeypatch.setattr(setup, "load_inverter", _record(devices))
        return []
    monkeypatch.setattr(invert_layout, "load_detectors", _record(devices))
    return []


@pytest.mark.parametrize("command", [evaluate, analyze, invert_layout])
@pytest.mark.parametrize(("args", "expected"), [([], "cuda"), (["trainer.accelerator=cpu"], "cpu")])
def test_every_inference_command_uses_it(command, args, expected, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    devices: list[torch.device] = []
    needed = _stop_where_the_device_is_used(command, monkeypatch, devices)
    assert command.main([*needed, *args]) == 2
    assert "stopped once the device was chosen" in capsys.readouterr().err
    assert devices == [torch.device(expected)]
