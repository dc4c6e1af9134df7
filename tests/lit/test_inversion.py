"""InversionModule: one frozen forward feeds four independent stage losses, right targets."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from inverse_detr.analysis.metrics import MeanImageBaseline, image_mse, masked_mean_image, psnr
from inverse_detr.data.batch import Batch
from inverse_detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from inverse_detr.detectors.detr import load_detr
from inverse_detr.inverse.chain import STAGES
from inverse_detr.inverse.losses import masked_mse
from inverse_detr.inverse.spec import build_chain
from inverse_detr.lit.inversion import SELECTION_METRIC, InversionModule


def make_batch(seed: int = 0, size: int = 2) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch(
        pixel_values=torch.randn(size, 3, 64, 64, generator=generator),
        pixel_mask=torch.ones(size, 64, 64, dtype=torch.long),
        targets=[],
        skipped=0,
    )


@pytest.fixture
def make_module(tiny_detr_dir, tiny_spec):
    def build(stages=STAGES, lr=None, objective="stagewise") -> InversionModule:
        # a trainable DETR in train mode: the module itself must freeze it
        detr = load_detr(tiny_detr_dir, frozen=False).train()
        torch.manual_seed(0)
        chain = build_chain(tiny_spec(detr, stages))
        return InversionModule(detr, chain, IMAGENET_MEAN, IMAGENET_STD, lr=lr, objective=objective)

    return build


@pytest.fixture
def module(make_module) -> InversionModule:
    return make_module().train()


@pytest.fixture(scope="module")
def batch() -> Batch:
    return make_batch()


def test_training_step_runs_one_frozen_forward(module, batch):
    calls = []
    handle = module.detr.register_forward_hook(lambda *_: calls.append(1))
    try:
        loss = module.training_step(batch, 0)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert loss.requires_grad
    assert torch.isfinite(loss)


def test_detr_stays_frozen_and_chain_trains(module, batch):
    module.eval()
    module.train()
    assert all(not m.training for m in module.detr.modules())
    assert [n for n, p in module.detr.named_parameters() if p.requires_grad] == []
    assert all(m.training for m in module.chain.modules())
    module.training_step(batch, 0).backward()
    assert [n for n, p in module.detr.named_parameters() if p.grad is not None] == []
    assert any(p.grad is not None for p in module.chain.parameters())


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_loss_reaches_only_its_module(module, batch, stage):
    emb = module.embed(batch)
    module.zero_grad(set_to_none=True)
    module.stage_losses(emb, batch)[stage].backward()
    own = getattr(module.chain, stage)
    # not every parameter: the inverse decoder's first self-attention sees all-zero targets
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in own.parameters())
    for other in STAGES:
        if other != stage:
            grads = [
                n for n, p in getattr(module.chain, other).named_parameters() if p.grad is not None
            ]
            assert grads == [], f"{stage} loss reached the inverse {other}: {grads}"
    assert all(p.grad is None for p in module.detr.parameters())


def test_stage_losses_use_the_design_targets(module, batch):
    module.eval()  # deterministic: no dropout, BatchNorm on running statistics
    emb = module.embed(batch)
    chain = module.chain
    losses = module.stage_losses(emb, batch)
    assert set(losses) == set(STAGES)
    with torch.no_grad():
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        pixels = chain.backbone(emb.backbone, emb.grid)  # (B, 3, 64, 64) in [0, 1]
        expected_backbone = F.mse_loss((pixels - mean) / std, batch.pixel_values)
        encoded = chain.encoder(emb.encoder, emb.spatial_pos, emb.mask)
        decoded = chain.decoder(emb.decoder, emb.spatial_pos, emb.mask)
        headed = chain.head(emb.logits, emb.boxes)
    torch.testing.assert_close(losses["backbone"].detach(), expected_backbone)
    torch.testing.assert_close(losses["encoder"].detach(), F.mse_loss(encoded, emb.backbone))
    # the decoder's target is the encoder OUTPUT, not the backbone embedding (reference bug)
    torch.testing.assert_close(losses["decoder"].detach(), F.mse_loss(decoded, emb.encoder))
    assert not torch.allclose(losses["decoder"].detach(), F.mse_loss(decoded, emb.backbone))
    torch.testing.assert_close(losses["head"].detach(), F.mse_loss(headed, emb.decoder))


@pytest.mark.parametrize("shape", [(2, 6, 4), (2, 3, 5, 7)], ids=["tokens", "pixels"])
def test_masked_mse_ignores_masked_positions(shape):
    torch.manual_seed(0)
    pred, target = torch.randn(shape), torch.randn(shape)
    tokens = len(shape) == 3
    mask = torch.rand(shape[:2] if tokens else (shape[0], *shape[2:])) > 0.4
    loss = masked_mse(pred, target, mask)

    hidden = ~mask.unsqueeze(-1 if tokens else 1).expand(shape)  # positions the mask drops
    changed = pred.clone()
    changed[hidden] = 1e3
    torch.testing.assert_close(masked_mse(changed, target, mask), loss)

    # and it is the plain mean over the kept entries
    kept = mask.unsqueeze(-1 if tokens else 1).expand(shape)
    torch.testing.assert_close(loss, ((pred - target)[kept] ** 2).mean())


def test_mean_image_baseline_matches_direct_computation():
    torch.manual_seed(0)
    first, second = torch.rand(3, 3, 8, 8), torch.rand(5, 3, 8, 8)
    baseline = MeanImageBaseline()
    baseline.update(first)
    baseline.update(second)
    images = torch.cat([first, second]).double()
    expected = ((images - images.mean(0, keepdim=True)) ** 2).mean()
    torch.testing.assert_close(baseline.compute().double(), expected, rtol=1e-5, atol=1e-6)
    baseline.reset()
    baseline.update(first)
    expected_first = ((first - first.mean(0, keepdim=True)) ** 2).mean()
    torch.testing.assert_close(baseline.compute(), expected_first, rtol=1e-5, atol=1e-6)


def test_optimiser_has_one_group_per_trained_stage(make_module):
    module = make_module(stages=("backbone", "head"), lr={"backbone": 0.1, "head": 0.2})
    optimiser = module.configure_optimizers()
    groups = {g["name"]: g for g in optimiser.param_groups}
    assert set(groups) == {"backbone", "head"}
    assert groups["backbone"]["lr"] == 0.1
    assert groups["head"]["lr"] == 0.2
    in_groups = [id(p) for g in optimiser.param_groups for p in g["params"]]
    assert len(in_groups) == len(set(in_groups))  # no parameter twice
    assert set(in_groups) == {id(p) for p in module.chain.parameters()}
    assert set(in_groups).isdisjoint(id(p) for p in module.detr.parameters())
    for stage in ("backbone", "head"):
        assert {id(p) for p in groups[stage]["params"]} == {
            id(p) for p in getattr(module.chain, stage).parameters()
        }


def test_checkpoints_leave_out_the_detr(tiny_detr_dir, tiny_spec, make_module, tmp_path):
    module = make_module()
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
    }
    assert any(k.startswith("detr.") for k in checkpoint["state_dict"])
    module.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("detr.") for k in checkpoint["state_dict"])
    assert any(k.startswith("chain.") for k in checkpoint["state_dict"])

    path = tmp_path / "inversion.ckpt"
    torch.save(checkpoint, path)
    fresh = load_detr(tiny_detr_dir)
    restored = InversionModule.load_from_checkpoint(
        path,
        detr=fresh,
        chain=build_chain(tiny_spec(fresh, STAGES)),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    for key, value in module.chain.state_dict().items():
        torch.testing.assert_close(restored.chain.state_dict()[key], value)
    assert restored.detr is fresh


def test_validation_logs_every_stage_and_the_baseline(module):
    trainer = pl.Trainer(
        fast_dev_run=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    batches = [make_batch(seed=1), make_batch(seed=2)]
    (metrics,) = trainer.validate(module, dataloaders=DataLoader(batches, batch_size=None))
    expected = {f"val/{s}/mse" for s in STAGES}
    expected |= {f"val/{s}/{m}" for s in STAGES for m in ("image_mse", "psnr")}
    expected |= {"val/baseline/image_mse", "val/loss"}
    assert expected <= set(metrics)
    assert all(math.isfinite(float(metrics[k])) for k in expected)


def test_mean_image_baseline_refuses_mixed_image_sizes():
    baseline = MeanImageBaseline()
    baseline.update(torch.rand(3, 3, 8, 8))
    with pytest.raises(ValueError, match="one image size"):
        baseline.update(torch.rand(2, 3, 16, 16))


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A Trainer for validating in tests: no logger, checkpoints, bars or summaries."""
    return pl.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def padded_batch(seed: int, size: int = 3) -> Batch:
    """Random images whose right part is padding (pixel_mask 0), a different width each."""
    batch = make_batch(seed=seed, size=size)
    for i in range(size):
        batch.pixel_mask[i, :, 40 + 8 * i :] = 0
    return batch


def test_validation_image_scores_are_per_image_and_skip_padding(module):
    """One definition: per-image MSE over real pixels, per-image PSNR, both averaged over
    images; the baseline scores each image against the mean of real pixels."""
    trainer = quiet_trainer()
    batches = [padded_batch(seed=3), padded_batch(seed=4)]
    (metrics,) = trainer.validate(module, dataloaders=DataLoader(batches, batch_size=None))
    module.eval()
    mses, truths, masks = {s: [] for s in module.image_stages}, [], []
    with torch.no_grad():
        for batch in batches:
            emb = module.embed(batch)
            truth = (batch.pixel_values * module.std + module.mean).clamp(0, 1)
            truths.append(truth)
            masks.append(batch.pixel_mask)
            for stage in module.image_stages:
                mses[stage].append(
                    image_mse(module.chain.reconstruct(emb, stage), truth, masks[-1])
                )
    for stage, values in mses.items():
        per_image = torch.cat(values)
        assert metrics[f"val/{stage}/image_mse"] == pytest.approx(float(per_image.mean()), rel=1e-4)
        assert metrics[f"val/{stage}/psnr"] == pytest.approx(
            float(psnr(per_image).mean()), rel=1e-4
        )
    images, mask = torch.cat(truths), torch.cat(masks)
    guess = masked_mean_image(images, mask).expand_as(images)
    expected = float(image_mse(guess, images, mask).mean())
    assert metrics["val/baseline/image_mse"] == pytest.approx(expected, rel=1e-4)


def test_mean_image_baseline_with_padding_matches_the_two_pass_definition():
    torch.manual_seed(1)
    images = torch.rand(6, 3, 8, 8)
    mask = torch.ones(6, 8, 8, dtype=torch.long)
    mask[:3, :, 5:] = 0
    mask[4, 6:, :] = 0
    baseline = MeanImageBaseline()
    baseline.update(images[:2], mask[:2])
    baseline.update(images[2:], mask[2:])
    guess = masked_mean_image(images, mask).expand_as(images)
    expected = image_mse(guess, images, mask).mean()
    torch.testing.assert_close(baseline.compute().double(), expected.double(), rtol=1e-5, atol=1e-7)
    # padding values do not matter
    images[mask.unsqueeze(1).expand_as(images) == 0] = 0.5
    again = MeanImageBaseline()
    again.update(images, mask)
    torch.testing.assert_close(again.compute(), baseline.compute(), rtol=1e-5, atol=1e-7)


def test_the_selection_metric_is_the_geometric_mean_of_the_stage_losses(module):
    trainer = quiet_trainer()
    batches = [make_batch(seed=5), make_batch(seed=6, size=3)]
    (metrics,) = trainer.validate(module, dataloaders=DataLoader(batches, batch_size=None))
    losses = torch.tensor([float(metrics[f"val/{s}/mse"]) for s in module.stages])
    expected = float(losses.log().mean().exp())
    assert metrics[SELECTION_METRIC] == pytest.approx(expected, rel=1e-5)


def test_baseline_states_have_their_shape_before_any_image():
    """Under DDP a rank may see no image: its states must still match the other ranks'."""
    baseline = MeanImageBaseline((8, 8))
    assert baseline.total.shape == (3, 8, 8) and baseline.weights.shape == (1, 8, 8)
    baseline.update(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="one image size"):
        baseline.update(torch.rand(2, 3, 16, 16))
    images = torch.rand(4, 3, 8, 8)
    sized, unsized = MeanImageBaseline((8, 8)), MeanImageBaseline()
    sized.update(images)
    unsized.update(images)
    torch.testing.assert_close(sized.compute(), unsized.compute())


def test_a_nan_stage_loss_shows_in_the_selection_metric(module, monkeypatch):
    trainer = quiet_trainer()
    real = module.stage_losses

    def one_nan(emb, batch):
        losses = real(emb, batch)
        losses["encoder"] = losses["encoder"] * float("nan")
        return losses

    monkeypatch.setattr(module, "stage_losses", one_nan)
    (metrics,) = trainer.validate(module, dataloaders=DataLoader([make_batch()], batch_size=None))
    assert math.isnan(metrics[SELECTION_METRIC])


def test_end_to_end_objective_trains_the_chain_from_the_decoder_by_one_image_loss(
    make_module, batch
):
    stages = ("backbone", "encoder", "decoder")
    module = make_module(stages, objective="end_to_end").eval()  # eval: fixed batch-norm
    assert module.selection_metric == "val/decoder/image_mse"
    emb = module.embed(batch)
    losses = module.training_losses(emb, batch)
    assert list(losses) == ["end_to_end"]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    recon = module.chain.reconstruct(emb, "decoder")  # (B, 3, H, W) in [0, 1]
    expected = F.mse_loss((recon - mean) / std, batch.pixel_values)  # every pixel is real
    torch.testing.assert_close(losses["end_to_end"], expected)
    module.train().training_step(batch, 0).backward()
    for stage in stages:  # the one loss reaches every module of the chain
        assert all(p.grad is not None for p in getattr(module.chain, stage).parameters())
    with pytest.raises(ValueError, match="end_to_end"):
        make_module(STAGES, objective="end_to_end")
