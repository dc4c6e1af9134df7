"""The commands: `inverse-detr <command> [key=value ...]`, `python -m inverse_detr <command>`, or
`python -m inverse_detr.<command>`. Each module here has `main(argv) -> exit code`, run through
the shared shell (`shell.run_command`: `--help`, one-line errors, exit codes 0 / 2 / 143)."""

from __future__ import annotations

import importlib
import sys

# command → (module under inverse_detr.cli, what it does)
COMMANDS = {
    "train": ("train", "train inverse modules, joint mode, a λ sweep, or a shapes detector"),
    "evaluate": ("evaluate", "AP / AP50 / AP75 and AP per category of a detector on a split"),
    "analyze": ("analyze", "stages, cross-layer and colour analyses of a trained inverse chain"),
    "invert_layout": ("invert_layout", "layout inversion: images a detector reads as a layout"),
    "attribute": (
        "attribute",
        "where a detection's class and box evidence lies (Grad-CAM, occlusion)",
    ),
    "bench": ("bench", "time the training step, its parts and batched layout inversion"),
    "average": ("average", "stochastic weight averaging of an inversion run's kept checkpoints"),
    "ship": ("ship", "store a trained detector (DETR or classic) for checkpoints/: fp16"),
}


def overview() -> str:
    """What `inverse-detr --help` prints."""
    width = max(len(c) for c in COMMANDS)
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join(
        [
            "usage: inverse-detr <command> [key=value ...]   (or python -m inverse_detr.<command>)",
            "",
            "commands:",
            *lines,
            "",
            "inverse-detr <command> --help prints the command's usage and config groups.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Dispatch `inverse-detr <command> ...` to the command's `main`."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        return 0
    name = args[0].replace("-", "_")
    if name not in COMMANDS:
        print(
            f"error: unknown command {args[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    module = importlib.import_module(f"inverse_detr.cli.{COMMANDS[name][0]}")
    return module.main(args[1:])
