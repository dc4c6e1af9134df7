"""`python -m inverse_detr.train`: runs `inverse_detr.cli.train` (`--help` for its usage)."""

import sys

if __name__ == "__main__":
    from inverse_detr.cli.train import main

    sys.exit(main())
