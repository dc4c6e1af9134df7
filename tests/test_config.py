from pathlib import Path

import pytest
from omegaconf import OmegaConf

from inverse_detr.config import CONFIG_DIR, GROUPS, ConfigError, load_config, save_config


def test_default_config_is_the_offline_shapes_run():
    cfg = load_config([])
    assert cfg.data.kind == "shapes" and cfg.model.name == "checkpoints/shapes-detr"


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_file_loads(group):
    for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
        load_config([f"{group}={path.stem}"])


def test_every_experiment_file_loads():
    names = [p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")]
    assert names
    for name in names:
        load_config([f"experiment={name}"])


def test_merge_order_experiment_then_overrides():
    cfg = load_config(["experiment=coco", "data.root=/data/coco", "data.batch_size=3"])
    assert cfg.data.kind == "coco" and cfg.data.image_size == [480, 640]
    assert cfg.model.name == "facebook/detr-resnet-50"
    assert cfg.data.root == "/data/coco" and cfg.data.batch_size == 3


def test_model_shorthand_names_a_directory_or_hub_id():
    assert load_config(["model=checkpoints/shapes-detr"]).model.name == "checkpoints/shapes-detr"
    assert load_config(["model=detr_r50"]).model.name == "facebook/detr-resnet-50"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["data.batchsize=3"], r"unknown config key 'data.batchsize'; allowed here: .*batch_size"),
        (["nonsense=1"], r"unknown config key 'nonsense'; allowed here: seed"),
        (["data.batch_size=many"], r"'data.batch_size'.*could not be converted to Integer"),
        (["data.resize=crop"], r"'data.resize' is 'crop'; allowed: fixed, pad"),
        (["experiment=nope"], r"unknown experiment 'nope'; available: coco"),
        (["data=nope"], r"unknown data 'nope'; available: coco, shapes"),
        (["batch_size"], r"not of the form key=value"),
        (["data.image_size=[8,8]"], r"data.image_size"),
        (["layout.lr=-1"], r"'layout.lr' must be > 0.0, got -1.0"),
        (["layout.blur_every=-5"], r"'layout.blur_every' must be ≥ 0, got -5"),
        (["layout.loss=boxes"], r"'layout.loss' is 'boxes'; allowed: all, or terms of cls, reg"),
        (["layout.loss=cls+cls"], r"'layout.loss' is 'cls\+cls'; allowed: all, or terms"),
        (["n=-1"], r"'layout.n' must be ≥ 0"),
        # the colour analysis compares ≥ 2 distinct filters: caught here, not deep in a run
        (["analysis.filters=[none]"], r"'analysis.filters' is \['none'\].*: none, red, .*gray$"),
        (["analysis.filters=[red,red]"], r"'analysis.filters' is \['red', 'red'\]; .*distinct"),
        (["analysis.filters=[none,pink]"], r"'analysis.filters' has \['pink'\]; allowed: none"),
        (["analysis.batch_size=0"], r"'analysis.batch_size' must be ≥ 1, got 0"),
        (["inverse.backbone_refine=-1"], r"'inverse.backbone_refine' must be ≥ 0, got -1"),
        (["inverse.objective=joint"], r"'inverse.objective' is 'joint'; allowed: stagewise"),
        # the default stages include the head, which end to end from the decoder never reaches
        (["inverse.objective=end_to_end"], r"must be \[backbone, encoder, decoder\], got \["),
    ],
)
def test_bad_config_is_a_one_line_error(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(override)
    assert "\n" not in str(info.value)


def test_bad_yaml_file_names_the_file(tmp_path: Path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "train.yaml").write_text("defaults: {}\n")
    (tmp_path / "experiment" / "typo.yaml").write_text("data:\n  batch_sise: 2\n")
    with pytest.raises(ConfigError, match="typo.*unknown config key 'data.batch_sise'"):
        load_config(["experiment=typo"], config_dir=tmp_path)


def test_saved_config_round_trips(tmp_path: Path):
    cfg = load_config(["data.batch_size=5"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert OmegaConf.load(path) == cfg


def test_the_suite_generates_data_in_a_temporary_cache_not_the_users(private_cache):
    cache = Path(load_config([]).data.cache_dir).expanduser()
    assert cache == private_cache
    assert not cache.is_relative_to(Path("~/.cache").expanduser())
