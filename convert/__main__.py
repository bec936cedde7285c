"""``python -m convert``: see :mod:`convert.cli`."""

import sys

from .cli import main

sys.exit(main())
