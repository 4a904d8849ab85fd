"""``python -m leap`` runs the ``leap`` command line."""

import sys

from leap.cli import main

sys.exit(main())
