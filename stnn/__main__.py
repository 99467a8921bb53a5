"""``python -m stnn``: see :mod:`stnn.cli`."""

import sys

from stnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
