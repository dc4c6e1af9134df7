"""The training entry point end to end, on tiny configs (fast_dev_run) and real coco128."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from inverse_detr import load_inverter
from inverse_detr.cli.train import main, run
from inverse_detr.config import load_config

REPO = Path(__file__).resolve().parents[1]


def test_default_entry_point_fast_dev_run_writes_a_complete_run_folder(tiny_overrides, tmp_path):
    assert main(tiny_overrides) == 0
    run_dir = tmp_path / "runs" / "tiny"
    assert OmegaConf.load(run_dir / "config.yaml").data.shapes.train == 8
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "reconstructions.png").stat().st_size > 1000
    assert {p.name for p in (run_dir / "export").iterdir()} >= {
        "inverter.json",
        "detr",
        "inverse.safetensors",
    }
    inverter = load_inverter(run_dir)  # the random DETR was kept beside the export
    out = inverter.reconstruct(torch.rand(2, 3, 64, 64), stage="head")
    assert out.shape == (2, 3, 64, 64) and out.min() >= 0 and out.max() <= 1


def test_subset_of_stages_trains_and_exports_only_those(tiny_overrides, tmp_path):
    assert main([*tiny_overrides, "inverse.stages=[encoder,backbone]"]) == 0
    weights = load_file(tmp_path / "runs" / "tiny" / "export" / "inverse.safetensors")
    assert {k.split(".")[0] for k in weights} == {"encoder", "backbone"}


def test_a_run_can_start_from_the_modules_of_an_earlier_one(tiny_overrides, tmp_path):
    """inverse.init: the earlier export's modules and sizes (learning rate 0 keeps them)."""
    assert main([*tiny_overrides, "run_name=first", "inverse.stages=[encoder,backbone]"]) == 0
    first = tmp_path / "runs" / "first"
    args = [
        *tiny_overrides,
        "run_name=second",
        f"inverse.init={first}",
        "inverse.stages=[encoder]",
        "inverse.lr.encoder=0",
        "inverse.backbone_hidden=[4]",  # not read: the sizes are the export's
    ]
    assert main(args) == 0
    before = load_file(first / "export" / "inverse.safetensors")
    after = load_file(tmp_path / "runs" / "second" / "export" / "inverse.safetensors")
    assert set(after) == {k for k in before if k.startswith("encoder.")}
    assert all(torch.equal(before[k], after[k]) for k in after)
    # a stage the export does not hold is a one-line error naming the key
    result = subprocess.run(
        [sys.executable, "-m", "inverse_detr.train", *tiny_overrides, "run_name=third",
         f"inverse.init={first}", "inverse.stages=[encoder,decoder]"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("has no inverse decoder; the run "
                                                           "trains encoder, decoder")  # fmt: skip


def test_csv_logger_records_per_stage_losses(tiny_overrides, tmp_path):
    overrides = [o for o in tiny_overrides if not o.startswith(("logger", "trainer.fast"))]
    run_dir = run(
        load_config(
            [
                *overrides,
                "logger=csv",
                "trainer.max_steps=2",
                "trainer.limit_val_batches=1",
                "trainer.log_every_n_steps=1",
            ]
        )
    ).run_dir
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    for key in (
        "train/backbone/mse",
        "train/head/mse",
        "val/decoder/mse",
        "val/encoder/image_mse",
        "val/baseline/image_mse",
        "val/head/psnr",
    ):
        assert key in header


def test_wandb_logger_runs_offline_one_run_each(tiny_overrides, tmp_path, monkeypatch):
    """Two runs in one process (a sweep, a notebook) are two W&B runs, not one."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = [o for o in tiny_overrides if not o.startswith(("logger", "trainer.fast"))]
    overrides += ["logger=wandb", "trainer.max_steps=1", "trainer.limit_val_batches=1"]
    found = []
    for name in ("first", "second"):
        run_dir = run(load_config([*overrides, f"run_name={name}"])).run_dir
        found += list((run_dir / "wandb").glob("offline-run-*"))
    assert len(found) == 2


def test_coco_experiment_on_real_images_with_a_local_detr(coco128, tiny_detr_dir, tmp_path):
    overrides = [
        "experiment=coco",
        f"data.root={coco128}",
        "data.val_images=train2017",
        "data.val_annotations=annotations/instances_train2017.json",
        f"model.name={tiny_detr_dir}",
        "data.image_size=[96,128]",
        "data.resize=pad",
        "data.batch_size=2",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.precision=32-true",
        "trainer.fast_dev_run=true",
        "inverse.backbone_hidden=[16]",
        "inverse.backbone_up=[16,8,8,8]",
        "inverse.head_hidden=[32]",
        f"out_dir={tmp_path}",
        "run_name=coco",
        "logger=none",
    ]
    assert main(overrides) == 0
    inverter = load_inverter(tmp_path / "coco" / "export")
    assert Path(inverter.detr.name_or_path) == tiny_detr_dir
    assert inverter.transform.mode == "pad"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batchsize=2", "unknown config key 'data.batchsize'"),
        ("model.name=./no/such/detr", "DETR directory not found"),
        ("data.root=/no/such/coco", "not found"),
        ("inverse.backbone_up=[8,8]", "stride 16 needs 4"),
        ("data.shapes.classes=2", "data.shapes"),
    ],
)
def test_user_errors_exit_2_with_one_line(override, message, tmp_path):
    args = [sys.executable, "-m", "inverse_detr.train", f"out_dir={tmp_path}", "logger=none"]
    if override.startswith("data.root"):
        args.append("data=coco")
    result = subprocess.run([*args, override], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr


def test_resume_continues_from_the_last_checkpoint(tiny_overrides, tmp_path):
    overrides = [o for o in tiny_overrides if not o.startswith("trainer.fast_dev_run")]
    first = run(load_config([*overrides, "trainer.max_steps=2", "trainer.max_epochs=5"]))
    step = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert step["global_step"] == 2
    run(load_config([*overrides, "trainer.max_steps=4", "trainer.max_epochs=5", "resume=last"]))
    step = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert step["global_step"] == 4


def test_resume_without_a_checkpoint_is_a_one_line_error(tiny_overrides):
    assert main([*tiny_overrides, "resume=last"]) == 2


def test_bf16_mixed_precision_fast_dev_run(tiny_overrides):
    assert main([*tiny_overrides, "trainer.precision=bf16-mixed"]) == 0


def test_the_best_checkpoint_is_chosen_by_the_geometric_mean_of_stage_losses(
    tiny_overrides, tmp_path
):
    overrides = [o for o in tiny_overrides if not o.startswith("trainer.fast")]
    cfg = load_config([*overrides, "trainer.max_steps=4", "trainer.max_epochs=2"])
    run_dir = run(cfg).run_dir
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=True)["callbacks"]
    (key,) = [k for k in state if k.startswith("ModelCheckpoint")]
    assert state[key]["monitor"] == "val/geomean_mse" and state[key]["best_model_score"] > 0


def test_an_end_to_end_chain_keeps_the_checkpoint_with_the_best_decoder_image(
    tiny_overrides, tmp_path
):
    overrides = [o for o in tiny_overrides if not o.startswith("trainer.fast")]
    stages = "inverse.stages=[backbone,encoder,decoder]"
    cfg = load_config([*overrides, stages, "inverse.objective=end_to_end", "trainer.max_steps=2"])
    run_dir = run(cfg).run_dir
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=True)["callbacks"]
    (key,) = [k for k in state if k.startswith("ModelCheckpoint")]
    assert state[key]["monitor"] == "val/decoder/image_mse"
    assert 0 < state[key]["best_model_score"] < 1  # an image MSE in [0, 1] pixels


def test_a_resumed_csv_run_keeps_the_metrics_of_its_first_part(tiny_overrides, tmp_path):
    overrides = [o for o in tiny_overrides if not o.startswith(("trainer.fast_dev_run", "logger"))]
    overrides += ["logger=csv", "trainer.max_epochs=5", "trainer.limit_val_batches=1"]
    first = run(load_config([*overrides, "trainer.max_steps=2"])).run_dir / "csv"
    before = (first / "metrics.csv").read_text()
    assert "val/loss" in before
    run(load_config([*overrides, "trainer.max_steps=4", "resume=last"]))
    assert (first / "metrics.part-1.csv").read_text() == before  # Lightning would delete it
    assert "val/loss" in (first / "metrics.csv").read_text()  # and the second part beside it
