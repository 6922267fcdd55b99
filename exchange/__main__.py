"""``python -m exchange`` runs the command line."""

import sys

from exchange.cli import main

sys.exit(main())
