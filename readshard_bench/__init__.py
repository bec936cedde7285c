"""The loader bench (``python -m loaders.bench``): readshard's loaders against what a user would
run instead, side by side in one process run.

Every competitor runs on the same reads and tokens and, for the random-access ones, on the
same random batches (drawn from :class:`loaders.ShuffleBatchSampler`, a full uniform shuffle),
so the *ratios* can be trusted on a shared, noisy machine even when absolute numbers move.

Competitors (samples/s), one module per family under :mod:`readshard_bench.competitors`:

* ``readshard``: ``ShardDataset`` per item, ``ds[i]`` in :class:`loaders.ShuffleSampler` order.
* ``readshard_batched``: ``ds.__getitems__`` on batches of 256 from ``ShuffleBatchSampler``.
* ``readshard_compressed``: the ``compressed`` layout, served by its chunk-shuffle mode.
* ``readshard_dataloader_2_workers``: ``loaders.ReadLoader``, 2 workers, batches of 256.
* ``numpy_memmap_limit``: the same bytes gathered with numpy fancy indexing on ``np.memmap``.
* ``hf_datasets``: the same tokens in a Hugging Face ``datasets`` Arrow dataset (bench extra).
* ``pyfastx_on_the_fly`` / ``pyfaidx_on_the_fly``: FASTA random access + METAGENE-1
  ``Tokenizer.encode`` per read (pyfaidx: bench extra).

A competitor whose package is missing is skipped with one line. Modes: default (the sample,
converted if absent), ``--quick`` (tiny, for tests), ``--reads N`` (synthetic scale run),
``--convert`` (converter vs the ``datasets`` map path, :mod:`readshard_bench.convert_bench`).
``--json`` prints one JSON object on stdout; progress goes to stderr.

This package lives in the source checkout and is not installed with readshard (nor is
``sample``, the simulator it converts): run it from a checkout's root. ``import loaders`` never
imports the bench.
"""

from readshard_bench.cli import main

__all__ = ["main"]
