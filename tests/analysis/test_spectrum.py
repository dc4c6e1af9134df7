"""The spectrum analysis: bands that add up to the image MSE, signals landing in their band,
then the analysis on a tiny inverter and through `analyze`."""

import math

import pytest
import torch

from inverse_detr.analysis.metrics import image_mse
from inverse_detr.analysis.spectrum import BAND_EDGES, band_labels, band_power, spectrum_analysis
from inverse_detr.analysis.stages import stage_analysis


def test_bands_add_up_to_the_image_mse_with_padding():
    error = torch.randn(2, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 24, 20)
    mask[1, 16:] = 0  # the second image is padded below row 16
    bands = band_power(error, mask, stride=4)
    assert bands.shape == (2, len(BAND_EDGES))
    assert torch.allclose(bands.sum(1), image_mse(error, torch.zeros_like(error), mask), rtol=1e-5)


@pytest.mark.parametrize(("period", "band"), [(48, 0), (12, 1), (6, 2), (3, 3), (2, 4)])
def test_a_sinusoid_lands_in_the_band_of_its_period(period, band):
    """stride 4: token Nyquist 1/8 cycle per pixel; bands > 16, 8–16, 4–8, 2–4, < 2 px (the
    lower edge of each band is inclusive, so 8 px lands in 4–8 and 4 px in 2–4)."""
    x = torch.arange(48, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * x / period).float().expand(1, 3, 48, 48)
    bands = band_power(wave, torch.ones(1, 48, 48), stride=4)[0]
    assert bands[band] == pytest.approx(float((wave**2).mean()), rel=1e-5)
    assert bands.sum() == pytest.approx(bands[band].item(), rel=1e-5)


def test_band_labels_name_the_periods():
    assert band_labels(16) == ["> 64 px", "32–64 px", "16–32 px", "8–16 px", "< 8 px"]


def test_spectrum_analysis_splits_each_stages_mse(tiny_inverter, val_images):
    result = spectrum_analysis(tiny_inverter, val_images, batch_size=3, progress=False)
    assert list(result.error) == ["backbone", "encoder", "decoder", "head"]
    stages = stage_analysis(tiny_inverter, val_images, list(result.error), progress=False)
    for stage, bands in result.error.items():
        assert sum(bands) == pytest.approx(stages.scores[stage].mse, rel=1e-4), stage
        assert all(k <= 1.0 for k in result.kept(stage))
    assert sum(result.image) == pytest.approx(stages.baseline.mse, rel=1e-4)
    assert result.to_dict()["bands"] == band_labels(tiny_inverter.spec.stride)
