"""``python -m eval``: see ``python -m eval --help`` and eval/README.md."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
