"""`python -m inverse_detr.bench`: runs `inverse_detr.cli.bench` (`--help` for its usage)."""

import sys

if __name__ == "__main__":
    from inverse_detr.cli.bench import main

    sys.exit(main())
