"""``python -m trustplane``: the same as the ``trustplane`` console script."""

import sys

from trustplane.cli import main

sys.exit(main())
