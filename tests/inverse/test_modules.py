"""Shape, gradient and behaviour tests of the inverse modules, at tiny sizes."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import nn

from inverse_detr.inverse import InverseBackbone, InverseDecoder, InverseEncoder, InverseHead

D, HEADS, FFN, Q, C1 = 32, 2, 64, 5, 7  # d_model, heads, FFN width, queries, classes + 1


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny_backbone(stride: int, kind: str = "conv") -> InverseBackbone:
    num_up = stride.bit_length() - 1
    return InverseBackbone(D, stride, kind, hidden=(8, 6), up=(4,) * num_up, linear_width=8)


def tiny_encoder(num_layers: int = 1) -> InverseEncoder:
    return InverseEncoder(D, HEADS, num_layers, FFN)


def tiny_decoder(num_layers: int = 1) -> InverseDecoder:
    return InverseDecoder(D, HEADS, num_layers, FFN, num_queries=Q)


def tiny_head(soft: bool = False) -> InverseHead:
    return InverseHead(C1, 4, D, hidden=(16, 8), soft=soft)


def padded_mask(batch: int, tokens: int, valid: int) -> torch.Tensor:
    """(B, HW) bool: item 0 all valid, the others valid on their first `valid` tokens."""
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[1:, valid:] = False
    return mask


def assert_grads(module: nn.Module, loss: torch.Tensor, dead: tuple[str, ...] = ()) -> None:
    """Every parameter gets a finite, nonzero gradient, except `dead` ones, which get zero up to
    round-off."""
    loss.backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        if name in dead:
            assert parameter.grad.abs().max() < 1e-6, name
        else:
            assert parameter.grad.abs().sum() > 0, name


# --- backbone ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize(("stride", "grid"), [(16, (4, 3)), (32, (2, 3))])
def test_backbone_shape_and_range(kind: str, stride: int, grid: tuple[int, int]) -> None:
    module = tiny_backbone(stride, kind)
    tokens = torch.randn(2, grid[0] * grid[1], D)
    image = module(tokens, grid)
    assert image.shape == (2, 3, grid[0] * stride, grid[1] * stride)
    assert image.min() >= 0 and image.max() <= 1


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_backbone_gradients(kind: str) -> None:
    module = tiny_backbone(16, kind).train()
    image = module(torch.randn(2, 4, D), (2, 2))
    assert_grads(module, (image - torch.rand_like(image)).square().mean())


def test_backbone_keeps_token_layout() -> None:
    """Token i of the row-major grid paints pixel block i (linear kind: no spatial mixing)."""
    module = tiny_backbone(16, "linear").eval()
    tokens = torch.randn(1, 6, D)
    changed = tokens.clone()
    changed[:, 4] += 1.0  # token (row 1, col 1) of a 2×3 grid
    diff = (module(changed, (2, 3)) - module(tokens, (2, 3))).abs().sum(dim=1)[0]
    assert diff[16:32, 16:32].sum() > 0
    diff[16:32, 16:32] = 0
    assert diff.sum() == 0


def test_backbone_channels_last() -> None:
    module = tiny_backbone(16).eval()
    tokens = torch.randn(1, 4, D)
    expected = module(tokens, (2, 2))
    module.to(memory_format=torch.channels_last)
    assert torch.allclose(module(tokens, (2, 2)), expected, atol=1e-6)


def test_backbone_refine_adds_layers_at_every_resolution() -> None:
    """refine=2: two more 3×3 ConvT after each of the log2(16) = 4 upsamplings, same output."""
    plain, refined = tiny_backbone(16), InverseBackbone(D, 16, hidden=(8, 6), up=(4,) * 4, refine=2)

    def convs(module: InverseBackbone) -> list[nn.ConvTranspose2d]:
        return [m for m in module.layers if isinstance(m, nn.ConvTranspose2d)]

    assert len(convs(refined)) == len(convs(plain)) + 2 * 4
    tokens = torch.randn(2, 6, D)
    assert refined(tokens, (2, 3)).shape == plain(tokens, (2, 3)).shape == (2, 3, 32, 48)
    ups = [i for i, c in enumerate(convs(refined)) if c.stride == (2, 2)]
    assert [b - a for a, b in pairwise(ups)] == [3, 3, 3]  # up, refine, refine, up, ...


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "deconv"}, "conv, linear"),
        ({"stride": 32, "up": (4, 4, 4, 4)}, r"len\(up\) = 4 .* log2\(stride\) = 5"),
        ({"stride": 24, "up": (4, 4, 4, 4)}, "power of two.*24"),
        ({"hidden": ()}, "hidden"),
        ({"refine": -1}, "refine"),
    ],
)
def test_backbone_rejects_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InverseBackbone(**{"d_model": D, "stride": 16, "up": (4,) * 4, **kwargs})


def test_backbone_rejects_tokens_not_matching_grid() -> None:
    with pytest.raises(ValueError, match="grid"):
        tiny_backbone(16)(torch.randn(1, 5, D), (2, 2))


# --- encoder -----------------------------------------------------------------------------------


def test_encoder_shape_and_gradients() -> None:
    module = tiny_encoder().train()
    x, pos = torch.randn(2, 12, D), torch.randn(2, 12, D)
    out = module(x, pos, padded_mask(2, 12, 8))
    assert out.shape == (2, 12, D)
    assert_grads(module, (out - torch.randn_like(out)).square().mean())


def test_encoder_mask_hides_padded_tokens() -> None:
    module = tiny_encoder().eval()
    x, pos, mask = torch.randn(2, 12, D), torch.randn(2, 12, D), padded_mask(2, 12, 8)
    changed = x.clone()
    changed[1, 8:] = torch.randn(4, D)
    with torch.no_grad():
        masked = module(x, pos, mask), module(changed, pos, mask)
        unmasked = module(x, pos, None), module(changed, pos, None)
    assert torch.allclose(masked[0][1, :8], masked[1][1, :8], atol=1e-6)
    assert not torch.allclose(unmasked[0][1, :8], unmasked[1][1, :8], atol=1e-4)


def test_encoder_rejects_non_bool_mask() -> None:
    with pytest.raises(ValueError, match="bool"):
        tiny_encoder()(torch.randn(1, 4, D), torch.randn(1, 4, D), torch.ones(1, 4))


# --- decoder -----------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_decoder_token_count_follows_grid(grid: tuple[int, int]) -> None:
    module = tiny_decoder().eval()
    tokens = grid[0] * grid[1]
    out = module(torch.randn(2, Q, D), torch.randn(2, tokens, D), padded_mask(2, tokens, 9))
    assert out.shape == (2, tokens, D)


def test_decoder_gradients() -> None:
    module = tiny_decoder().train()
    # in_proj_bias is zero-initialised; randomise it so that the first layer's out_proj
    # sees a nonzero input and every trainable path is exercised
    nn.init.normal_(module.layers[0].self_attn.in_proj_bias)
    out = module(torch.randn(2, Q, D), torch.randn(2, 6, D), padded_mask(2, 6, 4))
    # the first layer's self-attention values are all zero (zero targets), so its
    # in-projection weights get no gradient, exactly as in DETR's decoder
    dead = ("layers.0.self_attn.in_proj_weight",)
    assert_grads(module, (out - torch.randn_like(out)).square().mean(), dead)


def test_decoder_mask_hides_padded_tokens() -> None:
    # two layers: the first layer's self-attention is blind (all-zero values), the second's not
    module = tiny_decoder(num_layers=2).eval()
    memory, pos, mask = torch.randn(2, Q, D), torch.randn(2, 12, D), padded_mask(2, 12, 8)
    changed = pos.clone()
    changed[1, 8:] = torch.randn(4, D)
    with torch.no_grad():
        masked = module(memory, pos, mask), module(memory, changed, mask)
        unmasked = module(memory, pos, None), module(memory, changed, None)
    assert torch.allclose(masked[0][1, :8], masked[1][1, :8], atol=1e-6)
    assert not torch.allclose(unmasked[0][1, :8], unmasked[1][1, :8], atol=1e-4)


def test_decoder_rejects_query_count_mismatch() -> None:
    with pytest.raises(ValueError, match=rf"Q = {Q + 1}.*num_queries = {Q}"):
        tiny_decoder()(torch.randn(1, Q + 1, D), torch.randn(1, 4, D))


# --- head --------------------------------------------------------------------------------------


def test_head_shape_and_gradients() -> None:
    module = tiny_head().train()
    out = module(torch.randn(2, Q, C1), torch.rand(2, Q, 4))
    assert out.shape == (2, Q, D)
    assert_grads(module, (out - torch.randn_like(out)).square().mean())


def test_head_feeds_exact_one_hot() -> None:
    module = tiny_head().eval()
    logits, boxes = torch.randn(2, Q, C1), torch.rand(2, Q, 4)
    seen: list[torch.Tensor] = []
    module.mlp[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    module(logits, boxes)
    code, box_part = seen[0][..., :C1], seen[0][..., C1:]
    expected = torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    assert torch.equal(code, expected)
    assert torch.equal(box_part, boxes)


def test_head_soft_differs_from_one_hot_and_can_be_overridden() -> None:
    logits, boxes = torch.randn(2, Q, C1), torch.rand(2, Q, 4)
    module = tiny_head(soft=False).eval()
    one_hot, soft = module(logits, boxes), module(logits, boxes, soft=True)
    assert not torch.allclose(one_hot, soft, atol=1e-4)
    assert torch.allclose(module.class_code(logits, soft=True), logits.softmax(-1))
    module.soft = True
    assert torch.equal(module(logits, boxes), soft)
    assert torch.equal(module(logits, boxes, soft=False), one_hot)


def test_head_rejects_wrong_class_count() -> None:
    with pytest.raises(ValueError, match=f"num_labels_plus_one = {C1}"):
        tiny_head()(torch.randn(1, Q, C1 + 1), torch.rand(1, Q, 4))


def test_default_sizes_are_the_reference_architecture() -> None:
    head = InverseHead()
    widths = [layer.out_features for layer in head.mlp if isinstance(layer, nn.Linear)]
    assert head.mlp[0].in_features == 96 and widths == [512, 256, 256]
    decoder = InverseDecoder()
    assert len(decoder.layers) == 6 and decoder.memory_pos.weight.shape == (100, 256)
    encoder = InverseEncoder()
    assert len(encoder.layers) == 6 and encoder.layers[0].self_attn.num_heads == 8
