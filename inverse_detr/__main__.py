"""`python -m inverse_detr <command> ...`: the `inverse-detr` command (see `inverse_detr.cli`)."""

import sys

from inverse_detr.cli import main

if __name__ == "__main__":
    sys.exit(main())
