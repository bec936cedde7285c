"""``python -m readshard_bench``: the same as ``python -m loaders.bench``."""

from readshard_bench.cli import main

raise SystemExit(main())
