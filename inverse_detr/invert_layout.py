"""`python -m inverse_detr.invert_layout`: runs `inverse_detr.cli.invert_layout` (see `--help`)."""

import sys

if __name__ == "__main__":
    from inverse_detr.cli.invert_layout import main

    sys.exit(main())
