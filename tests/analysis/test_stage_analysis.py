"""Stage and cross-layer analyses: known-answer scores, then the analyses on a tiny inverter."""

import dataclasses

import pytest
import torch

from inverse_detr.analysis.cross_layer import cross_layer_analysis
from inverse_detr.analysis.stages import available_stages, image_scores, stage_analysis
from inverse_detr.analysis.subset import AnalysisError, ImageSet, fixed_subset
from inverse_detr.inverse.chain import InverseChain

STD = torch.tensor([0.5, 0.25, 0.2]).view(3, 1, 1)


def test_scores_of_a_perfect_and_a_known_reconstruction():
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 16, 16)
    perfect = image_scores(images, images, mask, STD)
    assert torch.all(perfect["mse"] == 0) and torch.allclose(perfect["ssim"], torch.ones(2))
    off = image_scores((images + 0.1).clamp(max=2), images, mask, STD)
    assert torch.allclose(off["mse"], torch.full((2,), 0.01))
    assert torch.allclose(off["psnr"], torch.full((2,), 20.0))
    # normalised space: each channel's error divided by its std², averaged over channels
    expected = 0.01 * (1 / STD.flatten() ** 2).mean()
    assert torch.allclose(off["mse_normalised"], expected.expand(2))


def test_padding_does_not_count():
    images = torch.zeros(1, 3, 8, 8)
    recon = images.clone()
    recon[..., 4:] = 1.0  # wrong only on the padding
    mask = torch.zeros(1, 8, 8)
    mask[..., :4] = 1
    scores = image_scores(recon, images, mask, STD)
    assert scores["mse"].item() == 0 and scores["ssim"].item() == pytest.approx(1.0)


def test_stage_analysis_scores_every_stage(tiny_inverter, val_images):
    result = stage_analysis(tiny_inverter, val_images, batch_size=3, examples=2, progress=False)
    assert list(result.scores) == ["backbone", "encoder", "decoder", "head", "head_soft"]
    assert result.images == len(val_images)
    for scores in [*result.scores.values(), result.baseline]:
        assert all(torch.isfinite(torch.tensor(v)) for v in dataclasses.astuple(scores))
    assert result.scores["head"] != result.scores["head_soft"]  # two different class codes
    assert set(result.examples) == {"input", "mean image", *result.scores}
    assert all(x.shape == (2, 3, 64, 64) for x in result.examples.values())


def test_the_baseline_of_identical_images_is_perfect(tiny_inverter, val_images):
    same = ImageSet(
        val_images.images[:1].expand(3, -1, -1, -1),
        val_images.pixel_mask[:1].expand(3, -1, -1),
        val_images.targets[:1] * 3,
    )
    result = stage_analysis(tiny_inverter, same, ["backbone"], progress=False)
    assert result.baseline.mse == pytest.approx(0.0, abs=1e-12)


def test_partial_chains(tiny_inverter, val_images):
    chain = tiny_inverter.chain
    only_backbone = dataclasses.replace(tiny_inverter, chain=InverseChain(backbone=chain.backbone))
    assert available_stages(only_backbone.chain) == ["backbone"]
    with pytest.raises(AnalysisError, match="inverse encoder"):
        cross_layer_analysis(only_backbone, val_images, progress=False)
    no_backbone = dataclasses.replace(tiny_inverter, chain=InverseChain(encoder=chain.encoder))
    with pytest.raises(AnalysisError, match="cannot reconstruct"):
        stage_analysis(no_backbone, val_images, progress=False)


def test_cross_layer_covers_every_layer(tiny_inverter, val_images):
    result = cross_layer_analysis(tiny_inverter, val_images, batch_size=4, progress=False)
    config = tiny_inverter.detr.config
    assert len(result.encoder) == config.encoder_layers + 1
    assert len(result.decoder) == config.decoder_layers
    # the last layers are the stage outputs: the same numbers as the stage analysis
    stages = stage_analysis(tiny_inverter, val_images, ["encoder", "decoder"], progress=False)
    assert result.encoder[-1].mse == pytest.approx(stages.scores["encoder"].mse, rel=1e-5)
    assert result.decoder[-1].mse == pytest.approx(stages.scores["decoder"].mse, rel=1e-5)
    assert "decoder 1" in result.examples and "encoder 0" in result.examples


def test_the_subset_is_fixed_by_the_seed(val_dataset):
    ids = [[t.image_id for t in fixed_subset(val_dataset, 3, seed).targets] for seed in (0, 0, 1)]
    assert ids[0] == ids[1] and ids[0] != ids[2]
