"""``python -m carbon_jupyter`` runs the command line."""

import sys

from carbon_jupyter.cli import main

sys.exit(main())
