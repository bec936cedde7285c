"""Serve readshard datasets to PyTorch: O(1) random access, full shuffling, balanced views.

Public API:

* :class:`ShardDataset` (map-style; ``ds[i]``, ``ds.__getitems__``, ``subset``) and its
  views :class:`ShardSubset`; :class:`IterableShardDataset` for sequential passes and
  chunk-shuffled epochs (the ``compressed`` layout).
* :class:`ShuffleSampler` / :class:`ShuffleBatchSampler`: full uniform shuffles in O(1)
  memory, resumable and elastic across ranks; :class:`BalancedSampler`.
* :class:`ReadBatch`: what ``__getitems__`` returns (arrays by key, item dicts by position,
  so default collators work too).
* :func:`collate_batch`: the fast DataLoader / Hugging Face Trainer collate function;
  :class:`ReadLoader`: the fast multi-worker loader (numpy in workers, tensors in the main process).
* :func:`chunk_shuffle_labels`: labels in the chunk-shuffled order (no tokens read).
* :mod:`loaders.orders`: the orders themselves, pure functions of (sizes, seed, epoch).

Measuring (``shuffle_quality``, throughput) is the benchmark's job: ``python -m loaders.bench``
runs :mod:`readshard_bench`, which ``import loaders`` never imports.
"""

from shards import FormatError
from loaders.balanced import BalancedSampler
from loaders.batch import ReadBatch
from loaders.chunks import chunk_shuffle_labels
from loaders.collate import collate_batch, to_tensors, trim_batch
from loaders.dataset import ShardDataset
from loaders.iterable import IterableShardDataset
from loaders.loader import ReadLoader
from loaders.sampler import ShuffleBatchSampler, ShuffleSampler, permutation_block, rank_indices
from loaders.views import ShardSubset

__all__ = [
    "BalancedSampler",
    "FormatError",
    "IterableShardDataset",
    "ReadBatch",
    "ReadLoader",
    "ShardDataset",
    "ShardSubset",
    "ShuffleBatchSampler",
    "ShuffleSampler",
    "chunk_shuffle_labels",
    "collate_batch",
    "permutation_block",
    "rank_indices",
    "to_tensors",
    "trim_batch",
]
