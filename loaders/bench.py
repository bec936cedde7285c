"""``python -m loaders.bench``: the loader benchmark's entry point.

A thin shim: the harness lives in the separate :mod:`readshard_bench` package (installed with
readshard, not imported by ``import loaders``). See ``python -m loaders.bench --help``.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the loader benchmark (arguments as ``python -m loaders.bench``)."""
    from readshard_bench.cli import main as bench_main

    return bench_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
