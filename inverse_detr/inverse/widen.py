"""Widening a trained conv inverse backbone without changing what it computes (Net2WiderNet).

A wider layer keeps the old channels and adds copies of randomly chosen ones; the layer after it
reads each copy with the original's weights split between them, so the sum, and the image, are
the same. The split is uneven by a little noise of zero sum per group: identical copies would
get identical gradients for ever, uneven ones can drift apart and learn something new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from inverse_detr.inverse.chain import InverseChain
from inverse_detr.inverse.spec import ChainSpec, build_chain, reference_up


@torch.no_grad()
def widen_stack(
    old: nn.Sequential, new: nn.Sequential, generator: torch.Generator, noise: float = 0.05
) -> None:
    """Copies `old`'s weights into `new`, a stack with the same layers, each as wide or wider.

    Both are `InverseBackbone.layers` of kind "conv": ConvTranspose2d (weight (in, out, k, k))
    and BatchNorm2d, in the same order. `noise` scales each copy's share of the next layer's
    weights (relative to the share). The first layer's input and the last one's output keep
    their width. Raises ValueError naming the layer whose shape cannot be widened into.
    """
    pairs = [(o, n) for o, n in zip(old, new, strict=True) if _has_weights(o, n)]
    convs = sum(isinstance(o, nn.ConvTranspose2d) for o, _ in pairs)
    source: torch.Tensor | None = None  # new input channel → the old channel it copies
    index = 0  # of the conv
    for o, n in pairs:
        if isinstance(o, nn.BatchNorm2d):
            _copy_batch_norm(o, n, source)
            continue
        last = index == convs - 1
        out_source = _channel_sources(o.out_channels, n.out_channels, generator, index, last)
        index += 1
        weight = o.weight
        if source is not None:
            weight = _split_rows(weight, source, generator, noise)
        n.weight.copy_(weight[:, out_source])
        n.bias.copy_(o.bias[out_source])
        source = out_source


def _has_weights(o: nn.Module, n: nn.Module) -> bool:
    if type(o) is not type(n):
        raise ValueError(f"layers differ: {type(o).__name__} against {type(n).__name__}")
    if isinstance(o, nn.ConvTranspose2d) and o.weight.shape[2:] != n.weight.shape[2:]:
        raise ValueError(f"kernel {tuple(o.weight.shape[2:])} against {tuple(n.weight.shape[2:])}")
    return isinstance(o, (nn.ConvTranspose2d, nn.BatchNorm2d))


def _channel_sources(
    old: int, new: int, generator: torch.Generator, index: int, last: bool
) -> torch.Tensor:
    """(new,) long: channel i < old is itself, the others copy random old channels."""
    if new < old or (last and new != old):
        raise ValueError(f"conv {index} has {old} output channels; it cannot become {new}")
    extra = torch.randint(0, old, (new - old,), generator=generator)
    return torch.cat([torch.arange(old), extra])


def _split_rows(
    weight: torch.Tensor, source: torch.Tensor, generator: torch.Generator, noise: float
) -> torch.Tensor:
    """weight: (old in, out, k, k) → (new in, out, k, k): each input channel's row shared by
    its copies, shares 1/count each times (1 + noise·z) with z of zero sum per copy group."""
    counts = torch.bincount(source, minlength=weight.shape[0]).to(weight.dtype)  # (old in,)
    z = torch.randn(len(source), generator=generator, dtype=weight.dtype)
    group_mean = torch.zeros(weight.shape[0], dtype=weight.dtype).index_add_(0, source, z)
    z = torch.where(counts[source] > 1, z - group_mean[source] / counts[source], 0.0)
    share = (1.0 + noise * z) / counts[source]  # (new in,), sums to 1 over each group
    return weight[source] * share.view(-1, 1, 1, 1)


def _copy_batch_norm(o: nn.BatchNorm2d, n: nn.BatchNorm2d, source: torch.Tensor | None) -> None:
    if source is None or len(source) != n.num_features:
        raise ValueError(f"BatchNorm of {n.num_features} channels follows no matching conv")
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(n, name).copy_(getattr(o, name)[source])
    n.num_batches_tracked.copy_(o.num_batches_tracked)


def widen_backbone(
    chain: InverseChain, spec: ChainSpec, hidden: Sequence[int], up: Sequence[int], seed: int
) -> tuple[InverseChain, ChainSpec]:
    """`chain` with its conv inverse backbone widened to `hidden`/`up` (as many layers as
    before, none narrower), computing the same images; the other modules are shared as they
    are. Raises ValueError with the reason when `spec` cannot be widened so."""
    if "backbone" not in spec.stages:
        raise ValueError("the chain has no inverse backbone to widen")
    if spec.backbone_kind != "conv":
        raise ValueError("only a conv inverse backbone can be widened")
    old_up = spec.backbone_up or reference_up(spec.stride)
    if len(hidden) != len(spec.backbone_hidden) or len(up) != len(old_up):
        raise ValueError(
            f"widening keeps the depth: backbone_hidden {list(spec.backbone_hidden)} and "
            f"backbone_up {list(old_up)} cannot become {list(hidden)} and {list(up)}"
        )
    wide = replace(spec, backbone_hidden=tuple(hidden), backbone_up=tuple(up))
    backbone = build_chain(replace(wide, stages=("backbone",))).backbone
    generator = torch.Generator().manual_seed(seed)
    widen_stack(chain.backbone.layers, backbone.layers, generator)
    chain.backbone = backbone.train(chain.backbone.training)
    return chain, wide
