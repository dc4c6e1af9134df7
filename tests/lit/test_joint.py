"""Joint mode: the λ mix, where gradients go, AP plumbing, the entry point and the λ sweep."""

import csv

import pytest
import torch

from inverse_detr.analysis.metrics import APScores, ap_metric, detection_targets
from inverse_detr.cli.train import main, run
from inverse_detr.config import load_config
from inverse_detr.data.batch import Batch
from inverse_detr.data.coco import Target
from inverse_detr.detectors.detr import (
    detection_loss,
    detr_predictions,
    forward_embeddings,
    load_detr,
)
from inverse_detr.inverse.spec import build_chain
from inverse_detr.lit.joint import JointModule


@pytest.fixture
def tiny_joint(tiny_detr_dir, tiny_spec):
    def build(lam: float) -> JointModule:
        detr = load_detr(tiny_detr_dir, frozen=False)
        spec = tiny_spec(detr, ("backbone", "encoder", "decoder"))
        return JointModule(detr, build_chain(spec), (0.5,) * 3, (0.25,) * 3, lam=lam)

    return build


def tiny_batch() -> Batch:
    torch.manual_seed(0)
    targets = [
        Target(
            torch.tensor([1, 3]),
            torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]]),
            torch.zeros(0, 64, 64, dtype=torch.bool),
            image_id=i,
            orig_size=(64, 64),
            size=(64, 64),
        )
        for i in range(2)
    ]
    return Batch(torch.randn(2, 3, 64, 64), torch.ones(2, 64, 64, dtype=torch.long), targets)


def grads_after_step(module: JointModule) -> tuple[dict, torch.Tensor]:
    module.zero_grad()
    loss = module.training_step(tiny_batch(), 0)
    loss.backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    return grads, loss


def has_grad(grads: dict, prefix: str) -> bool:
    return any(
        g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix)
    )


@pytest.mark.parametrize("lam", [0.25, 0.9])
def test_loss_is_the_stated_mix(tiny_joint, lam):
    module = tiny_joint(lam).eval()  # eval: no dropout, so parts are repeatable
    assert not module.detr.config.auxiliary_loss  # HF's flag would change the forward pass
    batch = tiny_batch()
    emb = forward_embeddings(module.detr, batch.pixel_values, batch.pixel_mask)
    parts = module.losses(batch, emb)
    expected = lam * parts["rec"] + (1 - lam) * parts["det"]
    torch.testing.assert_close(parts["loss"], expected)
    labels = [t.as_hf_labels() for t in batch.targets]
    torch.testing.assert_close(parts["det"], detection_loss(module.detr, emb, labels))
    assert parts["rec"] > 0 and parts["det"] > 0


def test_lambda_zero_trains_only_the_detector(tiny_joint):
    grads, _ = grads_after_step(tiny_joint(0.0))
    assert has_grad(grads, "detr.class_labels_classifier")
    assert has_grad(grads, "detr.model.encoder")
    assert not has_grad(grads, "chain.")


def test_lambda_one_trains_on_reconstruction_only(tiny_joint):
    grads, _ = grads_after_step(tiny_joint(1.0))
    assert has_grad(grads, "chain.backbone") and has_grad(grads, "chain.decoder")
    assert has_grad(grads, "detr.model.decoder")  # the reconstruction reaches into DETR
    # the class and box heads only shape the detection loss, which λ = 1 leaves out
    assert not has_grad(grads, "detr.class_labels_classifier")
    assert not has_grad(grads, "detr.bbox_predictor")


def test_ground_truth_fed_back_as_predictions_scores_ap_one():
    sizes = [(64, 96), (40, 96)]  # the second image is padded below 40 px rows
    labels = [torch.tensor([1, 2, 2]), torch.tensor([3])]
    boxes = [
        torch.tensor([[0.2, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4], [0.8, 0.8, 0.1, 0.2]]),
        torch.tensor([[0.5, 0.5, 0.5, 0.5]]),
    ]
    num_queries, num_classes = 5, 4
    logits = torch.full((2, num_queries, num_classes + 1), -10.0)
    logits[:, :, -1] = 10.0  # every query says "no object" ...
    pred_boxes = torch.rand(2, num_queries, 4) * 0.1 + 0.45
    for i, (lab, box) in enumerate(zip(labels, boxes, strict=True)):
        for q, (c, b) in enumerate(zip(lab, box, strict=True)):
            logits[i, q, c], logits[i, q, -1] = 10.0, -10.0  # ... except one per object
            pred_boxes[i, q] = b
    targets = [
        Target(lab, box, torch.zeros(0, 64, 96, dtype=torch.bool), i, size, size)
        for i, (lab, box, size) in enumerate(zip(labels, boxes, sizes, strict=True))
    ]
    metric = ap_metric(per_category=True)
    metric.update(detr_predictions(logits, pred_boxes, sizes), detection_targets(targets))
    scores = APScores.from_metric(metric.compute())
    assert scores.ap == pytest.approx(1.0) and scores.ap50 == pytest.approx(1.0)
    assert set(scores.per_category) == {1, 2, 3}
    # the same predictions shifted by half a box are no longer right
    metric = ap_metric()
    shifted = pred_boxes.clone()
    shifted[..., 0] += 0.15
    metric.update(detr_predictions(logits, shifted, sizes), detection_targets(targets))
    assert APScores.from_metric(metric.compute()).ap < 0.5


def test_two_step_joint_run_saves_detector_and_chain(tiny_overrides):
    overrides = [o for o in tiny_overrides if not o.startswith("trainer.fast_dev_run")]
    cfg = load_config(
        [
            "experiment=joint",
            *overrides,
            "trainer.max_steps=2",
            "trainer.limit_val_batches=1",
            "joint.lambda=0.5",
        ]
    )
    result = run(cfg)
    run_dir = result.run_dir
    assert result.metrics["val/rec_mse"] > 0
    assert (run_dir / "detr" / "config.json").is_file()
    assert (run_dir / "detr" / "preprocessor_config.json").is_file()
    assert (run_dir / "export" / "inverse.safetensors").is_file()
    metrics = (run_dir / "metrics.json").read_text()
    for key in ("val/ap", "val/ap50", "val/ap75", "val/rec_mse"):
        assert key in metrics
    assert load_detr(run_dir / "detr").config.d_model == 32


def test_keep_last_exports_the_last_epoch_not_the_best_ap50(tiny_overrides):
    overrides = [o for o in tiny_overrides if not o.startswith("trainer.fast_dev_run")]
    args = ["trainer.max_epochs=2", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    cfg = load_config(["experiment=joint", *overrides, *args, "joint.keep=last"])
    run_dir = run(cfg).run_dir
    (kept,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    assert kept.name.startswith("best-1-")  # epoch 1, the last, whatever its AP50
    state = torch.load(kept, map_location="cpu", weights_only=True)["callbacks"]
    (key,) = [k for k in state if k.startswith("ModelCheckpoint")]
    assert state[key]["monitor"] is None


def test_lambda_sweep_writes_table_and_plot(tiny_overrides, tmp_path):
    overrides = [
        o for o in tiny_overrides if not o.startswith(("trainer.fast_dev_run", "run_name"))
    ]
    args = [
        "experiment=joint",
        *overrides,
        "run_name=sweep",
        "sweep.lambda=[0,0.5]",
        "trainer.max_steps=1",
        "trainer.limit_val_batches=1",
    ]
    assert main(args) == 0
    sweep_dir = tmp_path / "runs" / "sweep"
    rows = list(csv.DictReader((sweep_dir / "sweep.csv").read_text().splitlines()))
    assert [float(r["lambda"]) for r in rows] == [0.0, 0.5]
    assert all(r["val/ap"] != "nan" for r in rows)
    assert (sweep_dir / "sweep.png").stat().st_size > 1000
    assert (sweep_dir / "lambda-0.5" / "export" / "inverter.json").is_file()


def test_sweep_needs_joint_mode():
    from inverse_detr.config import ConfigError

    with pytest.raises(ConfigError, match="mode=joint"):
        load_config(["sweep.lambda=[0,1]"])


def test_joint_run_can_start_from_trained_inverse_modules(tiny_overrides, tmp_path):
    first = run(load_config([*tiny_overrides, "run_name=inverse"])).run_dir
    args = [
        "experiment=joint",
        *tiny_overrides,
        "run_name=joint",
        "joint.lambda=0.5",
        f"joint.init_inverse={first}",
    ]
    joint_dir = run(load_config(args)).run_dir
    from safetensors.torch import load_file

    before = load_file(first / "export" / "inverse.safetensors")
    after = load_file(joint_dir / "export" / "inverse.safetensors")
    assert any(k.startswith("head.") for k in before)
    assert not any(k.startswith("head.") for k in after)  # the joint chain holds no inverse head
    assert set(after) < set(before)
    assert any(not torch.equal(before[k], after[k]) for k in after)  # and it trained


def test_wandb_sweep_file_sweeps_real_config_keys():
    from omegaconf import OmegaConf

    from inverse_detr.config import CONFIG_DIR

    sweep = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "sweep" / "lambda.yaml"))
    assert "experiment=joint" in sweep["command"]
    for key, spec in sweep["parameters"].items():
        for value in spec["values"]:
            assert (
                OmegaConf.select(load_config(["experiment=joint", f"{key}={value}"]), key) == value
            )
