"""The shell every command runs in: `--help`, logging, one-line errors and exit codes.

Exit codes: 0 done (or `--help`); 2 unusable input or config (one `error:` line on stderr);
143 training stopped by SIGTERM after saving last.ckpt (one `stopped:` line saying how to
resume).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from inverse_detr.config import CONFIG_DIR
from inverse_detr.errors import Preempted, UserError

USAGE_ERROR_EXIT = 2
PREEMPTED_EXIT = 143  # the shell's code for SIGTERM: the run did not finish, it can go on
HELP_FLAGS = ("-h", "--help")


def config_groups() -> dict[str, list[str]]:
    """{group: its options}, from the YAML files under configs/ (`data=coco` etc.)."""
    return {
        group.name: sorted(p.stem for p in group.glob("*.yaml"))
        for group in sorted(CONFIG_DIR.iterdir())
        if group.is_dir()
    }


def usage(doc: str | None, with_config: bool = True) -> str:
    """The command's module docstring, then the config groups it accepts."""
    text = (doc or "").strip()
    if not with_config:
        return text
    groups = [f"  {name}={'|'.join(options)}" for name, options in config_groups().items()]
    return "\n".join(
        [
            text,
            "",
            "Config groups (group=name reads configs/<group>/<name>.yaml):",
            *groups,
            "Any setting: key=value (e.g. data.batch_size=8); the schema and its defaults are",
            "in inverse_detr/config/schema.py, the defaults chosen in configs/train.yaml.",
        ]
    )


def run_command(
    body: Callable[[list[str]], None],
    argv: list[str] | None,
    doc: str | None,
    level: int = logging.WARNING,
    with_config: bool = True,
) -> int:
    """Call `body(args)` and turn what it raises into an exit code.

    argv: the arguments (None: sys.argv[1:]); doc: what `--help` prints above the groups.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in HELP_FLAGS for a in args):
        try:
            print(usage(doc, with_config), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        body(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_ERROR_EXIT
    except Preempted as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        return PREEMPTED_EXIT
    return 0
