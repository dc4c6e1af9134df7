"""Weight averaging: the mean of state dicts, BatchNorm statistics, and `average` end to end."""

import pytest
import torch
from safetensors.torch import load_file

from inverse_detr import load_inverter
from inverse_detr.cli.average import kept_checkpoints
from inverse_detr.cli.average import main as average_main
from inverse_detr.cli.train import run
from inverse_detr.config import ConfigError, load_config
from inverse_detr.inverse.average import average_states, refresh_batch_norm
from inverse_detr.inverse.backbone import InverseBackbone, token_map


def test_average_states_is_the_elementwise_mean_and_keeps_the_last_counter():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0]))
    assert out["n"].item() == 7 and not out["n"].is_floating_point()
    with pytest.raises(ValueError, match="other keys"):
        average_states([a, {"v": a["w"], "n": a["n"]}])
    with pytest.raises(ValueError, match="at least one"):
        average_states([])


def test_refresh_batch_norm_sets_the_exact_statistics_of_the_inputs():
    torch.manual_seed(0)
    net = InverseBackbone(d_model=8, stride=2, hidden=[6], up=[4])
    tokens = [torch.randn(5, 16, 8) * 3 + 1 for _ in range(2)]  # (B, HW, d) on a 4×4 grid
    refresh_batch_norm(net, (token_map(t, (4, 4)) for t in tokens))
    assert not net.training
    first_conv, first_bn = net.layers[0], net.layers[1]
    with torch.no_grad():
        pre = torch.cat([first_conv(token_map(t, (4, 4))) for t in tokens])  # (10, 6, 4, 4)
    assert torch.allclose(first_bn.running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    # every batch weighs the same (equal sizes here), each batch's variance unbiased
    per_batch = torch.stack([p.var((0, 2, 3)) for p in pre.split(5)]).mean(0)
    assert torch.allclose(first_bn.running_var, per_batch, rtol=1e-4)


def test_kept_checkpoints_default_to_the_last_quarter(tmp_path):
    folder = tmp_path / "checkpoints"
    with pytest.raises(ConfigError, match="keep_every_n_steps"):
        kept_checkpoints(tmp_path)
    folder.mkdir()
    for step in (100, 200, 300, 400):
        (folder / f"step-{step}.ckpt").touch()
    (folder / "last.ckpt").touch()
    assert list(kept_checkpoints(tmp_path)) == [300, 400]  # ≥ 0.75 × 400
    assert list(kept_checkpoints(tmp_path, 0)) == [100, 200, 300, 400]
    assert list(kept_checkpoints(tmp_path, 150, 300)) == [200, 300]  # a window mid-run
    assert list(kept_checkpoints(tmp_path, to_step=200)) == [200]  # ≥ 0.75 × 200
    with pytest.raises(ConfigError, match="no kept checkpoint at steps 500..400"):
        kept_checkpoints(tmp_path, 500)
    with pytest.raises(ConfigError, match="at steps 210..290 .kept: 100..400"):
        kept_checkpoints(tmp_path, 210, 290)


def test_average_command_stores_the_mean_of_the_kept_weights(tiny_overrides, tmp_path, capsys):
    overrides = [o for o in tiny_overrides if not o.startswith("trainer.fast_dev_run")]
    config = [*overrides, "trainer.max_steps=4", "trainer.max_epochs=4"]
    first = run(load_config([*config, "trainer.keep_every_n_steps=2"]))
    kept = sorted((first.run_dir / "checkpoints").glob("step-*.ckpt"))
    assert [p.name for p in kept] == ["step-2.ckpt", "step-4.ckpt"]
    states = [torch.load(p, weights_only=True)["state_dict"] for p in kept]
    assert "optimizer_states" not in torch.load(kept[0], weights_only=True)  # weights only

    out = tmp_path / "averaged"
    assert average_main([str(first.run_dir), str(out), "--from-step=0", "--bn-images=6"]) == 0
    assert "averaging 2 checkpoints, steps 2..4" in capsys.readouterr().out
    averaged = load_file(out / "inverse.safetensors")
    weight = "backbone.layers.0.weight"
    mean = (states[0][f"chain.{weight}"] + states[1][f"chain.{weight}"]) / 2
    assert torch.allclose(averaged[weight], mean)
    assert not torch.equal(averaged[weight], states[1][f"chain.{weight}"])  # not one of them
    # BatchNorm statistics were recomputed, not averaged
    stat = "backbone.layers.1.running_mean"
    assert not torch.allclose(
        averaged[stat], (states[0][f"chain.{stat}"] + states[1][f"chain.{stat}"]) / 2
    )
    inverter = load_inverter(out)
    recon = inverter.reconstruct(torch.rand(1, 3, 64, 64), stage="head")
    assert recon.shape == (1, 3, 64, 64)
    # a kept checkpoint of another architecture is a one-line error
    torch.save(
        {"state_dict": {"chain.x": torch.zeros(1)}, "global_step": 6},
        kept[0].parent / "step-6.ckpt",
    )
    assert average_main([str(first.run_dir), str(out), "--from-step=6"]) == 2
    assert "do not fit its export" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bn-images=0"], "--bn-images must be ≥ 1"),
        (["--from-step=x"], "whole number"),
        (["--to-step=1.5"], "--to-step must be a whole number"),
        (["--fast"], "usage: average"),
    ],
)
def test_average_command_bad_options_are_one_line_errors(args, message, tmp_path, capsys):
    assert average_main([str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_average_command_wants_an_inversion_run(tmp_path, capsys):
    assert average_main([str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("mode: joint\n")
    assert average_main([str(tmp_path)]) == 2
    assert "only inversion runs average" in capsys.readouterr().err
