"""InverseChain: every stage and layer reconstructs an image; errors say what went wrong."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import inverse_detr.inverse as inverse_package
from inverse_detr.inverse import (
    STAGES,
    InverseBackbone,
    InverseChain,
    InverseDecoder,
    InverseEncoder,
    InverseHead,
)
from inverse_detr.inverse.embeddings import ForwardEmbeddings

B, D, Q, C1, STRIDE = 2, 32, 5, 7, 16  # batch, d_model, queries, classes + 1, backbone stride
L_ENC, L_DEC = 2, 2  # forward layers; the inverse modules have their own (one) layer


def fake_embeddings(grid: tuple[int, int], image_size: tuple[int, int]) -> ForwardEmbeddings:
    """Random tensors with the contracts of one DETR forward; item 1 has padded tokens."""
    tokens = grid[0] * grid[1]
    mask = torch.ones(B, tokens, dtype=torch.bool)
    mask[1, tokens // 2 :] = False
    encoder_layers = tuple(torch.randn(B, tokens, D) for _ in range(L_ENC + 1))
    decoder_layers = (torch.zeros(B, Q, D), *(torch.randn(B, Q, D) for _ in range(L_DEC)))
    return ForwardEmbeddings(
        backbone=encoder_layers[0],
        grid=grid,
        spatial_pos=torch.randn(B, tokens, D),
        mask=mask,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        logits=torch.randn(B, Q, C1),
        boxes=torch.rand(B, Q, 4),
        query_pos=torch.randn(Q, D),
        image_size=image_size,
    )


def full_chain() -> InverseChain:
    torch.manual_seed(0)
    chain = InverseChain(
        backbone=InverseBackbone(D, STRIDE, "conv", hidden=(8,), up=(4,) * 4),
        encoder=InverseEncoder(D, num_heads=2, num_layers=1, ffn_dim=64),
        decoder=InverseDecoder(D, num_heads=2, num_layers=1, ffn_dim=64, num_queries=Q),
        head=InverseHead(C1, 4, D, hidden=(16,)),
    )
    return chain.eval()


@pytest.fixture(scope="module")
def chain() -> InverseChain:
    return full_chain()


@pytest.fixture(scope="module")
def emb() -> ForwardEmbeddings:
    torch.manual_seed(1)
    return fake_embeddings((4, 4), (64, 64))


STAGE_LAYERS = [
    ("backbone", None),
    *(("encoder", layer) for layer in (None, *range(L_ENC + 1))),
    *(("decoder", layer) for layer in (None, *range(1, L_DEC + 1))),
    ("head", None),
]


@pytest.mark.parametrize(("stage", "layer"), STAGE_LAYERS)
def test_every_stage_and_layer_reconstructs_an_image(
    chain: InverseChain, emb: ForwardEmbeddings, stage: str, layer: int | None
) -> None:
    with torch.no_grad():
        image = chain.reconstruct(emb, stage, layer)
    assert image.shape == (B, 3, 64, 64)
    assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1


def test_stages_and_layers_enter_the_chain_where_they_say(
    chain: InverseChain, emb: ForwardEmbeddings
) -> None:
    with torch.no_grad():
        from_backbone = chain.reconstruct_embedding(emb, "backbone")
        from_encoder = chain.reconstruct_embedding(emb, "encoder")
        from_layer_1 = chain.reconstruct_embedding(emb, "encoder", 1)
        from_decoder = chain.reconstruct_embedding(emb, "decoder", 2)
        expected_decoder = chain.encoder(
            chain.decoder(emb.decoder_layers[2], emb.spatial_pos, emb.mask),
            emb.spatial_pos,
            emb.mask,
        )
    assert from_backbone is emb.backbone
    assert torch.equal(from_encoder, chain.encoder(emb.encoder, emb.spatial_pos, emb.mask))
    assert not torch.allclose(from_encoder, from_layer_1)
    assert torch.equal(from_decoder, expected_decoder)
    assert from_decoder.shape == (B, 16, D)


def test_reconstruct_is_the_backbone_on_the_embedding(
    chain: InverseChain, emb: ForwardEmbeddings
) -> None:
    with torch.no_grad():
        tokens = chain.reconstruct_embedding(emb, "decoder")
        assert torch.equal(chain.reconstruct(emb, "decoder"), chain.backbone(tokens, emb.grid))
        assert torch.equal(chain(emb, "decoder"), chain.reconstruct(emb, "decoder"))


def test_head_soft_is_passed_through(chain: InverseChain, emb: ForwardEmbeddings) -> None:
    with torch.no_grad():
        one_hot = chain.reconstruct(emb, "head", soft=False)
        soft = chain.reconstruct(emb, "head", soft=True)
    assert not torch.allclose(one_hot, soft)


def test_image_size_not_multiple_of_stride_is_resized(chain: InverseChain) -> None:
    torch.manual_seed(2)
    emb = fake_embeddings((4, 3), (60, 41))  # ceil(60/16) = 4, ceil(41/16) = 3
    with torch.no_grad():
        image = chain.reconstruct(emb, "encoder")
    assert image.shape == (B, 3, 60, 41)
    assert image.min() >= 0 and image.max() <= 1


def test_gradients_reach_every_module_through_the_chain(emb: ForwardEmbeddings) -> None:
    chain = full_chain().train()
    image = chain.reconstruct(emb, "head")
    image.square().mean().backward()
    for name in STAGES:
        grads = [p.grad for p in getattr(chain, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_partial_chain_holds_only_what_it_was_given(emb: ForwardEmbeddings) -> None:
    full = full_chain()
    chain = InverseChain(backbone=full.backbone, encoder=full.encoder).eval()
    assert chain.head is None and chain.decoder is None
    assert not any(key.startswith(("head.", "decoder.")) for key in chain.state_dict())
    with torch.no_grad():
        assert chain.reconstruct(emb, "encoder").shape == (B, 3, 64, 64)
        # the embedding needs no inverse backbone
        embedding_only = InverseChain(encoder=full.encoder).eval()
        assert embedding_only.reconstruct_embedding(emb, "encoder").shape == (B, 16, D)


@pytest.mark.parametrize(
    ("modules", "stage", "match"),
    [
        (("backbone", "encoder"), "decoder", r"'decoder' needs .*\bdecoder\b"),
        (("backbone",), "head", "head, decoder, encoder"),
        (("encoder", "decoder", "head"), "encoder", r"needs .*\bbackbone\b"),
    ],
)
def test_missing_module_is_named(
    emb: ForwardEmbeddings, modules: tuple[str, ...], stage: str, match: str
) -> None:
    full = full_chain()
    chain = InverseChain(**{name: getattr(full, name) for name in modules})
    with pytest.raises(ValueError, match=match):
        chain.reconstruct(emb, stage)


@pytest.mark.parametrize(
    ("stage", "layer", "match"),
    [
        ("pixels", None, "backbone, encoder, decoder, head"),
        ("encoder", L_ENC + 1, rf"encoder layer {L_ENC + 1} .* 0\.\.{L_ENC}"),
        ("encoder", -1, rf"0\.\.{L_ENC}"),
        ("decoder", 0, rf"decoder layer 0 .* 1\.\.{L_DEC}"),
        ("decoder", L_DEC + 1, rf"1\.\.{L_DEC}"),
        ("head", 1, "layer=None"),
        ("backbone", 0, "layer=None"),
    ],
)
def test_bad_stage_or_layer_is_explained(
    chain: InverseChain, emb: ForwardEmbeddings, stage: str, layer: int | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        chain.reconstruct(emb, stage, layer)
    with pytest.raises(ValueError, match=match):
        chain.reconstruct_embedding(emb, stage, layer)


def test_inverse_package_imports_no_transformers_or_lightning() -> None:
    for path in Path(inverse_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] + [getattr(node, "module", "")]
                roots = {(name or "").split(".")[0] for name in names}
                assert not roots & {"transformers", "lightning", "pytorch_lightning"}, path
