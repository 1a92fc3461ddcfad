"""``python -m mgtoolkit``: see :mod:`mgtoolkit.cli`."""

import sys

from .cli import main

sys.exit(main())
