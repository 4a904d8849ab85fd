"""``python -m leap.cli``."""

import sys

from leap.cli import main

sys.exit(main())
