"""Converter throughput and memory: ``python benchmarks/convert_bench.py [--fragments-per-species N] [--json]``.

A shim kept for old command lines; the benchmark lives in :mod:`readshard_bench.convert_bench`
(``python -m loaders.bench --convert N`` runs the same).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script from a checkout: make the checkout importable before the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from readshard_bench.convert_bench import main

    raise SystemExit(main())
