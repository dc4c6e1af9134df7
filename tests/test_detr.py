from pathlib import Path

import pytest
import torch

from inverse_detr.config import ConfigError, load_config
from inverse_detr.detectors.detr import (
    DetrLoadError,
    backbone_stride,
    detection_loss,
    forward_embeddings,
    image_normalization,
    load_detr,
    random_detr,
)


@pytest.fixture(scope="module")
def frozen(tiny_detr_dir):
    return load_detr(tiny_detr_dir)


def test_loaded_model_is_frozen(frozen):
    assert not frozen.training
    assert all(not m.training for m in frozen.modules())
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == []


def test_forward_embeddings_match_hf_outputs(frozen):
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 64, 96)
    pixel_mask = torch.ones(2, 64, 96, dtype=torch.long)
    pixel_mask[1, :, 48:] = 0  # right half of image 1 is padding
    with torch.no_grad():
        emb = forward_embeddings(frozen, pixels, pixel_mask)
        ref = frozen(pixel_values=pixels, pixel_mask=pixel_mask, output_hidden_states=True)
        fmap, _ = frozen.model.backbone(pixels, pixel_mask)[-1]
        projected = frozen.model.input_projection(fmap)  # (B, d, H', W')
    stride = backbone_stride(frozen)
    assert emb.grid == (64 // stride, 96 // stride)
    hw, d = emb.grid[0] * emb.grid[1], frozen.config.d_model
    assert emb.backbone.shape == (2, hw, d)
    torch.testing.assert_close(emb.backbone, projected.flatten(2).transpose(1, 2))
    torch.testing.assert_close(emb.encoder_layers[0], emb.backbone)
    torch.testing.assert_close(emb.encoder, ref.encoder_last_hidden_state)
    torch.testing.assert_close(emb.decoder, ref.last_hidden_state)
    assert len(emb.encoder_layers) == frozen.config.encoder_layers + 1
    assert len(emb.decoder_layers) == frozen.config.decoder_layers + 1
    torch.testing.assert_close(emb.logits, ref.logits)
    torch.testing.assert_close(emb.boxes, ref.pred_boxes)
    assert emb.query_pos.shape == (frozen.config.num_queries, d)
    assert emb.spatial_pos.shape == (2, hw, d)
    assert emb.mask.dtype == torch.bool and emb.mask.shape == (2, hw)
    assert emb.mask[0].all() and not emb.mask[1].all()
    # the sine embedding depends on the mask: padded image 1 differs from full image 0
    assert not torch.allclose(emb.spatial_pos[0], emb.spatial_pos[1])
    assert emb.image_size == (64, 96)


def test_spatial_pos_matches_hf_sine_embedding(frozen):
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        emb = forward_embeddings(frozen, pixels)
    _, mask = frozen.model.backbone(pixels, torch.ones(1, 64, 64))[-1]
    expected = frozen.model.position_embedding(
        shape=(1, frozen.config.d_model, *emb.grid), device="cpu", dtype=torch.float32, mask=mask
    )
    torch.testing.assert_close(emb.spatial_pos, expected.flatten(2).transpose(1, 2))


def test_embeddings_carry_gradients_when_allowed(tiny_detr_dir):
    model = load_detr(tiny_detr_dir, frozen=False)
    emb = forward_embeddings(model, torch.randn(1, 3, 64, 64))
    emb.decoder.sum().backward()
    assert model.model.input_projection.weight.grad is not None
    assert emb.detach().decoder.grad_fn is None


def test_missing_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(DetrLoadError, match="not found") as info:
        load_detr(tmp_path / "nowhere" / "detr")
    assert "\n" not in str(info.value)


def test_directory_without_config_is_a_one_line_error(tmp_path):
    with pytest.raises(DetrLoadError, match="no config.json"):
        load_detr(tmp_path)


def test_hub_id_offline_says_how_to_use_a_local_directory():
    with pytest.raises(DetrLoadError, match="save_pretrained") as info:
        load_detr("facebook/detr-resnet-50-not-cached", local_files_only=True)
    assert "\n" not in str(info.value)


def test_normalization_defaults_to_imagenet_and_reads_processor_config(tmp_path: Path):
    mean, std = image_normalization(tmp_path)
    assert mean == pytest.approx((0.485, 0.456, 0.406)) and std[2] == pytest.approx(0.225)
    (tmp_path / "preprocessor_config.json").write_text(
        '{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}'
    )
    assert image_normalization(tmp_path) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_inner_decoder_layers_are_normalised_like_the_last(tiny_detr_dir):
    model = load_detr(tiny_detr_dir)
    norm = model.model.decoder.layernorm
    with torch.no_grad():  # a trained norm is not the identity on normalised inputs
        norm.weight.fill_(2.0)
        norm.bias.fill_(0.5)
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        emb = forward_embeddings(model, pixels)
        ref = model(pixel_values=pixels, output_hidden_states=True)
    assert len(emb.decoder_layers) == 3
    torch.testing.assert_close(emb.decoder_layers[1], norm(ref.decoder_hidden_states[1]))
    assert not torch.allclose(emb.decoder_layers[1], ref.decoder_hidden_states[1])


def test_detection_loss_matches_hf_without_auxiliary_layers(tiny_detr_dir):
    model = load_detr(tiny_detr_dir)
    labels = [
        {
            "class_labels": torch.tensor([1, 4]),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.7, 0.3, 0.2]]),
        }
    ]
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        emb = forward_embeddings(model, pixels)
        ours = detection_loss(model, emb, labels)
        hf_last_layer_only = model(pixel_values=pixels, labels=labels).loss
    # two decoder layers: ours adds the first layer's auxiliary loss to HF's main loss
    assert ours > hf_last_layer_only
    model.model.decoder.layers = model.model.decoder.layers[:1]
    model.config.decoder_layers = 1
    with torch.no_grad():
        emb = forward_embeddings(model, pixels)
        torch.testing.assert_close(
            detection_loss(model, emb, labels), model(pixel_values=pixels, labels=labels).loss
        )


def test_a_shortened_backbone_keeps_stride_16_without_its_last_stage():
    """backbone_stages=3: resnet10t stops after its third stage (the 6 + 6-layer shapes DETR)."""
    full = random_detr(d_model=32, attention_heads=2, ffn_dim=64, num_queries=5)
    short = random_detr(
        dilation=False, backbone_stages=3, d_model=32, attention_heads=2, ffn_dim=64, num_queries=5
    )
    assert backbone_stride(short) == backbone_stride(full) == 16
    count = lambda m: sum(p.numel() for p in m.model.backbone.parameters())  # noqa: E731
    assert count(short) < count(full) / 3
    with torch.no_grad():
        emb = forward_embeddings(short.eval(), torch.randn(1, 3, 64, 64))
    assert emb.grid == (4, 4) and emb.backbone.shape == (1, 16, 32)
    with pytest.raises(ConfigError, match="backbone_stages"):
        load_config(["model.random.backbone_stages=3"])  # dilation is on by default
