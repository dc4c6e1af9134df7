"""Loading: schema defaults, YAML groups and experiments, `key=value` overrides (see the
package docstring for the order), then `checks.validate`; and saving a run's resolved config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from inverse_detr.config.checks import validate
from inverse_detr.config.schema import CONFIG_DIR, Config, ConfigError

GROUPS = ("data", "model", "inverse", "trainer")
# `lambda` is a Python keyword, so the schema spells it `lam` / `lambdas`
ALIASES = {"joint.lambda": "joint.lam", "sweep.lambda": "sweep.lambdas"}
# analyze's own keys, short on its command line
ALIASES |= {"ckpt": "analysis.ckpt", "analyses": "analysis.analyses"}
# and invert_layout's
ALIASES |= {"layouts": "layout.layouts", "n": "layout.n"}


YAML_BOOLEAN_WORDS = ("off", "on", "yes", "no", "y", "n")


def _schema_error(err: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError):
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.select(OmegaConf.structured(Config), parent) if parent else None
        allowed = ", ".join((node if node is not None else OmegaConf.structured(Config)).keys())
        return ConfigError(f"{source}: unknown config key '{key}'; allowed here: {allowed}")
    msg = str(err).splitlines()[0]
    return ConfigError(f"{source}: bad value for config key '{key}': {msg}")


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as err:
        raise _schema_error(err, source) from None


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # yaml's errors carry multi-line context
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: must hold a mapping of config keys")
    return loaded


def _split_defaults(cfg: DictConfig, path: Path) -> tuple[dict[str, str], DictConfig]:
    """Pop the `defaults: {group: name}` selection off a YAML file's values."""
    defaults = cfg.pop("defaults", None) or {}
    if not isinstance(defaults, (dict, DictConfig)) or any(k not in GROUPS for k in defaults):
        raise ConfigError(f"{path}: 'defaults' must map groups ({', '.join(GROUPS)}) to names")
    return {str(k): str(v) for k, v in defaults.items()}, cfg


def _parse_overrides(overrides: list[str], config_dir: Path):
    groups: dict[str, str] = {}
    experiment, dotlist = None, []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        if key == "experiment":
            experiment = value
        elif key == "model" and not (config_dir / "model" / f"{value}.yaml").is_file():
            dotlist.append(f"model.name={value}")
        elif key in GROUPS:
            groups[key] = value
        else:
            # YAML 1.1 reads off/on/yes/no as booleans: a string key would get 'False'; quoted,
            # a string key keeps the word and a bool key still converts it
            if value.lower() in YAML_BOOLEAN_WORDS:
                value = f"'{value}'"
            dotlist.append(f"{ALIASES.get(key, key)}={value}")
    return groups, experiment, dotlist


def load_config(
    overrides: list[str] | None = None,
    config_dir: Path = CONFIG_DIR,
    run_config: Path | None = None,
) -> DictConfig:
    """The validated config for `overrides` (a list of `key=value` strings).

    run_config: a run's saved config.yaml whose `data` section is merged after the YAML files,
    before the command line (analyze on a run folder).
    """
    groups_cli, experiment, dotlist = _parse_overrides(list(overrides or []), config_dir)
    base = config_dir / "train.yaml"
    groups, base_values = _split_defaults(_read_yaml(base), base)
    exp_values, exp_source = OmegaConf.create(), "experiment"
    if experiment:
        exp_path = config_dir / "experiment" / f"{experiment}.yaml"
        if not exp_path.is_file():
            names = sorted(p.stem for p in (config_dir / "experiment").glob("*.yaml"))
            raise ConfigError(f"unknown experiment '{experiment}'; available: {', '.join(names)}")
        exp_groups, exp_values = _split_defaults(_read_yaml(exp_path), exp_path)
        exp_source = str(exp_path)
        groups.update(exp_groups)
    groups.update(groups_cli)

    cfg = OmegaConf.structured(Config)
    for group, name in groups.items():
        path = config_dir / group / f"{name}.yaml"
        if not path.is_file():
            names = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
            raise ConfigError(f"unknown {group} '{name}'; available: {', '.join(names)}")
        cfg = _merge(cfg, {group: _read_yaml(path)}, str(path))
    cfg = _merge(cfg, base_values, str(base))
    cfg = _merge(cfg, exp_values, exp_source)
    if run_config is not None:
        cfg = _merge(cfg, {"data": _read_yaml(run_config).get("data", {})}, str(run_config))
    try:
        cli = OmegaConf.from_dotlist(dotlist)
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad override: {str(err).splitlines()[0]}") from None
    cfg = _merge(cfg, cli, "command line")
    validate(cfg)
    return cfg


def given_keys(overrides: list[str]) -> list[str]:
    """The keys `key=value` overrides set, aliases resolved; a group or an experiment chosen
    gives its name (`data=coco` → data, `ckpt=runs/x` → analysis.ckpt)."""
    return [ALIASES.get(key, key) for key in (item.partition("=")[0] for item in overrides)]


def save_config(cfg: DictConfig, path: Path) -> Path:
    """Write the resolved config as YAML (the record of what a run did)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path
