"""Training learns: a few dozen steps on one fixed batch drive every trained loss well down.

The modules' own optimisers (`configure_optimizers`) take the steps, with the learning rates
raised so that a tiny model moves in seconds; nothing else of the training path is bypassed.
"""

from __future__ import annotations

import torch

from inverse_detr.data.batch import Batch
from inverse_detr.data.coco import Target
from inverse_detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from inverse_detr.detectors.detr import forward_embeddings, load_detr
from inverse_detr.inverse.chain import STAGES
from inverse_detr.inverse.spec import build_chain
from inverse_detr.lit.inversion import InversionModule
from inverse_detr.lit.joint import JOINT_STAGES, JointModule

STEPS = 60


def fixed_batch() -> Batch:
    """Two 64 px images, a reddish and a bluish one with smooth texture, two objects each."""
    generator = torch.Generator().manual_seed(0)
    texture = torch.randn(2, 3, 8, 8, generator=generator) * 0.1
    texture = torch.nn.functional.interpolate(texture, size=(64, 64), mode="bilinear")
    colours = torch.tensor([[0.85, 0.2, 0.15], [0.1, 0.25, 0.8]]).view(2, 3, 1, 1)
    rgb = (colours + texture).clamp(0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    pixels = (rgb - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])
    targets = [
        Target(
            torch.tensor([1, 3]),
            boxes,
            torch.zeros(0, 64, 64, dtype=torch.bool),
            i,
            (64, 64),
            (64, 64),
        )
        for i in range(2)
    ]
    return Batch(pixels, torch.ones(2, 64, 64, dtype=torch.long), targets)


def train(losses, optimiser) -> tuple[dict[str, float], dict[str, float]]:
    """STEPS optimiser steps on the fixed batch, each on `losses(batch)`'s total; the parts
    at the first step and at the last."""
    batch = fixed_batch()
    first = last = {}
    for step in range(STEPS):
        optimiser.zero_grad(set_to_none=True)
        total, parts = losses(batch)
        total.backward()
        optimiser.step()
        last = {k: float(v.detach()) for k, v in parts.items()}
        first = last if step == 0 else first
    return first, last


def test_inversion_lowers_every_stage_loss(tiny_detr_dir, tiny_spec):
    torch.manual_seed(0)
    detr = load_detr(tiny_detr_dir)
    chain = build_chain(tiny_spec(detr, STAGES))
    lr = {"backbone": 1e-2, "encoder": 1e-2, "decoder": 1e-2, "head": 1e-2}
    module = InversionModule(detr, chain, IMAGENET_MEAN, IMAGENET_STD, lr=lr).train()
    optimiser = module.configure_optimizers()

    def losses(batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = module.stage_losses(module.embed(batch), batch)
        return torch.stack(list(parts.values())).sum(), parts

    first, last = train(losses, optimiser)
    assert set(first) == set(STAGES)
    for stage in STAGES:
        assert last[stage] < 0.5 * first[stage], (stage, first[stage], last[stage])


def test_joint_mode_lowers_both_losses_at_half_lambda(tiny_detr_dir, tiny_spec):
    torch.manual_seed(0)
    detr = load_detr(tiny_detr_dir, frozen=False)
    chain = build_chain(tiny_spec(detr, JOINT_STAGES))
    module = JointModule(
        detr,
        chain,
        IMAGENET_MEAN,
        IMAGENET_STD,
        lam=0.5,
        lr_backbone=1e-4,
        lr_transformer=1e-3,
        lr_inverse=1e-2,
        weight_decay=0.0,
    ).train()
    optimiser = module.configure_optimizers()

    def losses(batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = module.losses(batch, forward_embeddings(detr, batch.pixel_values, batch.pixel_mask))
        return out["loss"], {"det": out["det"], "rec": out["rec"]}

    first, last = train(losses, optimiser)
    for name in ("det", "rec"):
        assert last[name] < 0.6 * first[name], (name, first[name], last[name])
