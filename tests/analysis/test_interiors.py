"""The interiors analysis: erosion, the per-object statistics, and the table on a tiny chain."""

import pytest
import torch

from inverse_detr.analysis.interiors import BACKGROUND, erode, interior_stats, interiors_analysis
from inverse_detr.analysis.stages import stage_analysis


def test_erode_takes_off_a_rim_of_the_given_width():
    mask = torch.zeros(1, 12, 12, dtype=torch.bool)
    mask[0, 2:10, 3:9] = True  # 8 × 6
    assert erode(mask, 0).sum() == 48
    assert erode(mask, 1).sum() == 6 * 4
    assert erode(mask, 2).sum() == 4 * 2
    assert erode(mask, 3).sum() == 0


def _stripes(phase: int) -> torch.Tensor:
    """(3, 16, 16): red, every other column darker, starting at `phase`."""
    image = torch.zeros(3, 16, 16)
    image[0] = 0.8
    image[0, :, phase::2] = 0.4
    return image


def test_interior_stats_tell_a_kept_pattern_from_a_flat_fill_and_a_shifted_one():
    inside = torch.ones(3, 16, 16, dtype=torch.bool)
    image = _stripes(0).expand(3, -1, -1, -1)
    recon = torch.stack([_stripes(0), torch.zeros(3, 16, 16), _stripes(1)])
    recon[1, 0] = 0.6  # the flat fill of the right colour
    stats = interior_stats(recon, image, inside)
    values = 3 * stats["pixels"]
    floor = stats["floor"] / values  # the image's spread: 0.2² over one channel of three
    assert torch.allclose(floor, torch.full((3,), 0.04 / 3))
    error = stats["error"] / values
    assert error[0] == 0 and error[1] == pytest.approx(floor[1].item())  # a flat fill: the floor
    assert error[2] == pytest.approx(4 * floor[2].item())  # at the wrong phase: worse than flat
    kept = stats["kept"]
    assert kept[0] == pytest.approx(1.0) and kept[2] == pytest.approx(-1.0)
    assert torch.isnan(kept[1])  # no pattern to correlate


def test_interiors_analysis_shares_add_up_and_the_background_is_counted(tiny_inverter, val_images):
    result = interiors_analysis(tiny_inverter, val_images, batch_size=3, progress=False)
    assert list(result.rows) == ["backbone", "encoder", "decoder", "head"]
    stages = stage_analysis(tiny_inverter, val_images, list(result.rows), progress=False)
    for stage, rows in result.rows.items():
        assert BACKGROUND in rows and len(rows) > 1
        # visible masks do not overlap in the shapes world: the shares cover the image once
        assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0, rel=1e-4)
        real = float(val_images.pixel_mask.sum())
        assert sum(r["mask_pixels"] for r in rows.values()) == real
        background = rows[BACKGROUND]  # its error × pixels is its share of the image's
        mse = stages.scores[stage].mse
        assert background["error"] * background["pixels"] == pytest.approx(
            background["share"] * mse * real, rel=1e-3
        )
        for category, row in rows.items():
            if category != BACKGROUND and row["pixels"] > 0:  # small objects erode away
                assert row["objects"] >= 1 and row["floor"] >= 0 and row["error"] >= 0
    assert result.to_dict()["erode"] == 3
