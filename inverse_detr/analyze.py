"""`python -m inverse_detr.analyze`: runs `inverse_detr.cli.analyze` (`--help` for its usage)."""

import sys

if __name__ == "__main__":
    from inverse_detr.cli.analyze import main

    sys.exit(main())
