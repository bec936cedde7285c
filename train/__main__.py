"""``python -m train --config configs/sample.yaml``."""

import sys

from train.cli import main

sys.exit(main())
