"""The planted truths: generated worlds measure back (from their annotations alone) to the rules
they declare, every rule switches on and off, and the first version's world is unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from inverse_detr.config import CHOICES
from inverse_detr.data.shapes import PLANTED, Rules, generate_shapes, render_image
from inverse_detr.data.shapes.rules import (
    COLOUR_RULES,
    CONTEXT_RULES,
    PROTOTYPE_PROBABILITY,
    SCALE_RULES,
    TEXTURES,
)
from inverse_detr.data.shapes.stats import format_stats, is_at_side, world_stats

N_TRAIN, N_VAL, SIZE = 500, 4, 128


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("planted")
    paths = generate_shapes(out, N_TRAIN, N_VAL, size=SIZE, seed=1, workers=2, rules=PLANTED)
    return world_stats(paths.train_annotations)


@pytest.fixture(scope="module")
def plain_paths(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    return generate_shapes(out, N_TRAIN, N_VAL, size=SIZE, seed=1, workers=2, rules=Rules())


@pytest.fixture(scope="module")
def plain(plain_paths) -> dict:
    return world_stats(plain_paths.train_annotations)


def test_context_rules_hold_as_declared(planted):
    assert len(planted["context"]) == len(CONTEXT_RULES)
    for row in planted["context"]:
        # occlusion can hide a partner or shift its visible box: a little below the declared p
        assert row["declared_p"] - 0.12 <= row["p_at_side"] <= row["declared_p"] + 0.08, row
        assert row["p_partner_alone"] > 0.3, row  # the partner also appears on its own
        assert row["anchor_images"] > 100


def test_without_the_rule_partners_are_seldom_at_that_side(plain_paths):
    assert world_stats(plain_paths.train_annotations)["context"] == []  # nothing declared
    control = world_stats(plain_paths.train_annotations, list(CONTEXT_RULES))
    assert len(control["context"]) == len(CONTEXT_RULES)
    assert all(row["declared_p"] is None for row in control["context"])
    assert all(row["p_at_side"] < 0.25 for row in control["context"]), control["context"]


def test_textures_are_exactly_the_declared_ones(planted, plain):
    for name, row in planted["texture"].items():
        expected = 1.0 if name in TEXTURES else 0.0
        assert row["declared"] == TEXTURES.get(name)
        assert row["textured_share"] == expected, (name, row)
    assert all(row["textured_share"] == 0.0 for row in plain["texture"].values())


def test_scale_spread_fills_every_size_bucket(planted):
    assert set(planted["sizes"]) == {"small", "medium", "large"}
    assert all(share >= 0.25 for share in planted["sizes"].values()), planted["sizes"]
    assert sum(planted["sizes"].values()) == pytest.approx(1.0)


def test_hues_follow_the_colour_rule(planted, tmp_path):
    for name, row in planted["hue"].items():
        assert abs(row["near_prototype_share"] - PROTOTYPE_PROBABILITY) < 0.08, (name, row)
    out = tmp_path / "control"
    paths = generate_shapes(out, 200, 2, size=64, seed=2, workers=1, rules=Rules(colour="off"))
    control = world_stats(paths.train_annotations)
    for name, row in control["hue"].items():
        assert row["rule"] == "uniform" and row["near_prototype_share"] < 0.2, (name, row)


def test_category_entries_record_the_rules(tmp_path):
    paths = generate_shapes(tmp_path / "w", 2, 1, size=64, seed=0, workers=1, rules=PLANTED)
    coco = json.loads(paths.val_annotations.read_text())
    cats = {c["name"]: c for c in coco["categories"]}
    assert cats["square"]["texture"] == "stripes" and cats["circle"]["texture"] is None
    assert cats["triangle"]["context"] == [{"with": 1, "where": "below", "p": 0.8}]
    assert coco["info"]["rules"] == PLANTED.to_json()
    assert set(coco["info"]["area_buckets"]) == {"small", "medium", "large"}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("rules", [Rules(), PLANTED, Rules(colour="off")], ids=str)
def test_every_rule_set_is_deterministic(rules, tmp_path):
    one = generate_shapes(tmp_path / "one", 6, 3, size=64, seed=5, workers=1, rules=rules)
    two = generate_shapes(tmp_path / "two", 6, 3, size=64, seed=5, workers=2, rules=rules)
    assert _hashes(one.root) == _hashes(two.root)


def test_the_first_versions_images_are_unchanged():
    """Rules() draws what the first version drew (hashes taken from that version's code)."""
    first = render_image(0, "train", 0, 128, 6).image.tobytes()
    other = render_image(0, "val", 7, 128, 6).image.tobytes()
    assert hashlib.sha256(first).hexdigest().startswith("7b5b0ff2f1a4befb")
    assert hashlib.sha256(other).hexdigest().startswith("73d69fa9d56312b9")


def test_side_test_on_boxes():
    anchor = [40.0, 10.0, 20.0, 20.0]  # x, y, w, h
    assert is_at_side(anchor, [42.0, 40.0, 16.0, 16.0], "below")
    assert not is_at_side(anchor, [42.0, 40.0, 16.0, 16.0], "left")
    assert is_at_side(anchor, [5.0, 12.0, 16.0, 16.0], "left")
    assert not is_at_side(anchor, [90.0, 40.0, 16.0, 16.0], "below")  # not aligned


def test_config_choices_are_the_generators(planted):
    assert CHOICES["data.shapes.colour"] == COLOUR_RULES
    assert CHOICES["data.shapes.scale"] == SCALE_RULES
    assert "context rules:" in format_stats(planted)
