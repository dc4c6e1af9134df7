"""The errors a command reports as one line, and the stop it reports as resumable.

Imports nothing: every module may derive its one-line errors from `UserError`, and the command
shell (`inverse_detr.cli.shell`) catches the base alone.
"""

from __future__ import annotations


class UserError(Exception):
    """Unusable input, config or files: the command prints `error: <message>` and exits 2.

    The message is one line that names the file, key or value at fault.
    """


class Preempted(Exception):
    """Training stopped by SIGTERM after saving last.ckpt: the command prints
    `stopped: <message>` (how to resume) and exits 143."""
