"""``python -m mvds`` runs the command line."""

import sys

from mvds.cli import main

sys.exit(main())
