"""Widening a trained inverse backbone: the same images, symmetry broken, clear refusals."""

from dataclasses import replace

import pytest
import torch

from inverse_detr import load_inverter
from inverse_detr.cli.train import main
from inverse_detr.inverse.backbone import InverseBackbone
from inverse_detr.inverse.spec import ChainSpec, build_chain
from inverse_detr.inverse.widen import widen_backbone, widen_stack


def _trained_statistics(net: InverseBackbone, grid: tuple[int, int]) -> None:
    """Moves every BatchNorm's running statistics away from (0, 1), as training would."""
    net.train()
    with torch.no_grad():
        for _ in range(4):
            net(torch.randn(6, grid[0] * grid[1], net.d_model) * 2 + 1, grid)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_widened_stack_makes_the_same_images_in_both_modes(mode):
    torch.manual_seed(0)
    narrow = InverseBackbone(16, 8, hidden=[12, 8], up=[8, 6, 4], refine=1)
    wide = InverseBackbone(16, 8, hidden=[20, 8], up=[12, 9, 7], refine=1)
    _trained_statistics(narrow, (3, 3))
    widen_stack(narrow.layers, wide.layers, torch.Generator().manual_seed(1))
    tokens = torch.randn(5, 9, 16)  # (B, HW, d) on a 3×3 grid
    getattr(narrow, mode)(), getattr(wide, mode)()
    with torch.no_grad():
        expected, got = narrow(tokens, (3, 3)), wide(tokens, (3, 3))
    assert got.shape == (5, 3, 24, 24)
    assert torch.allclose(got, expected, atol=1e-5)


def test_copies_start_equal_but_are_read_unevenly_so_they_can_part():
    torch.manual_seed(0)
    narrow = InverseBackbone(4, 2, hidden=[3], up=[2])
    wide = InverseBackbone(4, 2, hidden=[6], up=[2])
    widen_stack(narrow.layers, wide.layers, torch.Generator().manual_seed(0), noise=0.1)
    first, second = wide.layers[0].weight, wide.layers[3].weight  # (4, 6, 1, 1), (6, 2, 3, 3)
    old_second = narrow.layers[3].weight  # (3, 2, 3, 3)
    for copy in range(3, 6):
        source = next(c for c in range(3) if torch.equal(first[:, copy], first[:, c]))
        copies = [c for c in range(6) if torch.equal(first[:, c], first[:, source])]
        assert len(copies) >= 2
        shares = second[copies]  # the copies' rows of the next layer: unequal, summing to one
        assert not torch.allclose(shares[0], shares[1])
        assert torch.allclose(shares.sum(0), old_second[source], atol=1e-6)


def test_widening_refuses_a_narrower_layer_another_depth_or_a_linear_backbone():
    spec = ChainSpec(8, 4, 3, 4, stages=("backbone",), backbone_hidden=(6,), backbone_up=(4, 4))
    chain = build_chain(spec)
    with pytest.raises(ValueError, match="conv 0 has 6 output channels; it cannot become 5"):
        widen_backbone(chain, spec, [5], [4, 4], seed=0)
    with pytest.raises(ValueError, match="conv 2 has 4 output channels; it cannot become 3"):
        widen_backbone(chain, spec, [6], [4, 3], seed=0)
    with pytest.raises(ValueError, match="widening keeps the depth"):
        widen_backbone(chain, spec, [6, 6], [4, 4], seed=0)
    with pytest.raises(ValueError, match="no inverse backbone to widen"):
        encoder_only = replace(spec, stages=("encoder",), encoder_layers=1, encoder_ffn=8)
        widen_backbone(build_chain(encoder_only), encoder_only, [6], [4, 4], seed=0)
    linear = ChainSpec(8, 4, 3, 4, stages=("backbone",), backbone_kind="linear")
    with pytest.raises(ValueError, match="only a conv inverse backbone"):
        widen_backbone(build_chain(linear), linear, [6], [4, 4], seed=0)


def test_a_run_widens_the_backbone_of_its_init_and_exports_the_wider_one(tiny_overrides, tmp_path):
    assert main([*tiny_overrides, "run_name=narrow", "inverse.stages=[backbone]"]) == 0
    wide_args = [
        *tiny_overrides,
        "run_name=wide",
        "inverse.stages=[backbone]",
        f"inverse.init={tmp_path / 'runs' / 'narrow'}",
        "inverse.init_widen=true",
        "inverse.backbone_hidden=[24]",
        "inverse.backbone_up=[16,12,8,8]",
        "inverse.lr.backbone=0",  # BatchNorm statistics still move in training mode
    ]
    assert main(wide_args) == 0
    narrow, wide = (load_inverter(tmp_path / "runs" / n) for n in ("narrow", "wide"))
    assert wide.spec.backbone_hidden == (24,) and wide.spec.backbone_up == (16, 12, 8, 8)
    assert sum(p.numel() for p in wide.chain.parameters()) > sum(
        p.numel() for p in narrow.chain.parameters()
    )
    # a layer narrower than the export's is a one-line config error naming the key
    assert main([*wide_args[:-3], "inverse.backbone_hidden=[8]", "run_name=bad"]) == 2
