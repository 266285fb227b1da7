"""Entry point for `python -m ff_lib`."""

import sys

from ff_lib.cli import main

sys.exit(main())
