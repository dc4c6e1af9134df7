"""`python -m inverse_detr.attribute`: runs `inverse_detr.cli.attribute` (see `--help`)."""

import sys

if __name__ == "__main__":
    from inverse_detr.cli.attribute import main

    sys.exit(main())
