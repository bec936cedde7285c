"""``python -m loaders.bench``: the loader benchmark's entry point.

A thin entry point: the harness is the :mod:`readshard_bench` package of the source checkout
(not installed with readshard, never imported by ``import loaders``). Run it from a checkout's
root; an installed readshard without the checkout says so in one line and exits 2.
See ``python -m loaders.bench --help``.
"""

from __future__ import annotations

import sys
from typing import Sequence

__all__ = ["main"]

_NO_HARNESS = ("python -m loaders.bench: the benchmark harness (readshard_bench) is not installed with "
               "readshard; run it from the root of a source checkout: git clone <readshard repository> "
               "readshard && cd readshard && make bench")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the loader benchmark (arguments as ``python -m loaders.bench``); 2 without a checkout."""
    try:
        from readshard_bench.cli import main as bench_main
    except ModuleNotFoundError as exc:
        if exc.name != "readshard_bench":
            raise  # a dependency of the harness is missing: its own message names it
        print(_NO_HARNESS, file=sys.stderr)
        return 2
    return bench_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
