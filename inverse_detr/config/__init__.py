"""Typed configuration: dataclass schemas (`schema.py`), YAML groups and `key=value` overrides
(`loading.py`), validation (`checks.py`).

`load_config(["experiment=coco", "data.batch_size=8"])` merges, in order:
1. the schema defaults below,
2. the group files chosen in `configs/train.yaml`'s `defaults`, then by the experiment's
   `defaults`, then by `group=name` arguments (`data=coco` reads `configs/data/coco.yaml`),
3. `configs/train.yaml`'s own values, then the experiment file's
   (`configs/experiment/NAME.yaml`),
4. dotlist overrides (`data.batch_size=8`).
`model=DIR_OR_HUB_ID` is short for `model.name=...` when no `configs/model/` file has that name.
Unknown keys and wrong types are one-line `ConfigError`s naming the key.
"""

from inverse_detr.config.checks import CHOICES, validate
from inverse_detr.config.loading import ALIASES, GROUPS, given_keys, load_config, save_config
from inverse_detr.config.schema import (
    ANALYSES,
    CACHE_ENV,
    CONFIG_DIR,
    FILTERS,
    REPO_ROOT,
    Config,
    ConfigError,
    default_cache_dir,
)

__all__ = [
    "ALIASES",
    "ANALYSES",
    "CACHE_ENV",
    "CHOICES",
    "CONFIG_DIR",
    "FILTERS",
    "GROUPS",
    "REPO_ROOT",
    "Config",
    "ConfigError",
    "default_cache_dir",
    "given_keys",
    "load_config",
    "save_config",
    "validate",
]
