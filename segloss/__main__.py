"""``python -m segloss``: see :mod:`segloss.cli`."""

import sys

from segloss.cli import main

if __name__ == "__main__":
    sys.exit(main())
