"""Weight averaging of an inverse chain (stochastic weight averaging over a run's checkpoints).

The mean of the weights of several checkpoints along one training run lies in a flatter,
lower-loss part of the basin than any one of them (Izmailov et al. 2018, "Averaging weights
leads to wider optima"). BatchNorm's running statistics do not average: they are recomputed
for the averaged weights on the inputs the module was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch.optim.swa_utils import update_bn

from inverse_detr.inverse.backbone import InverseBackbone


def average_states(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform mean of `states` (state dicts of one architecture), as float32; integer
    tensors (BatchNorm's batch counters) are taken from the last state."""
    if not states:
        raise ValueError("average_states needs at least one state dict")
    keys = list(states[0])
    for i, state in enumerate(states[1:], 1):
        if list(state) != keys:
            raise ValueError(f"state {i} has other keys than state 0: not the same architecture")
    averaged = {}
    for key in keys:
        tensors = [state[key] for state in states]
        if tensors[0].is_floating_point():
            averaged[key] = torch.stack([t.float() for t in tensors]).mean(0)
        else:
            averaged[key] = tensors[-1].clone()
    return averaged


@torch.no_grad()
def refresh_batch_norm(backbone: InverseBackbone, maps: Iterable[torch.Tensor]) -> None:
    """Recompute the BatchNorm running statistics of `backbone` over `maps`, batches of
    (B, d, H', W') backbone embeddings (`token_map` of what DETR gives): every batch weighs the
    same (torch's `update_bn`). The inverse backbone is the chain's only module with BatchNorm,
    and the real backbone embedding its training input. Leaves the module in eval mode."""
    update_bn(maps, backbone.layers)
    backbone.eval()
