"""`python -m inverse_detr.evaluate`: runs `inverse_detr.cli.evaluate` (`--help` for its usage)."""

import sys

if __name__ == "__main__":
    from inverse_detr.cli.evaluate import main

    sys.exit(main())
