"""Where a conversion's time goes: ``python benchmarks/unit_profile.py [--json]``.

A shim: the profile lives in :mod:`readshard_bench.unit_profile`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script from a checkout: make the checkout importable before the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from readshard_bench.unit_profile import main

    raise SystemExit(main())
