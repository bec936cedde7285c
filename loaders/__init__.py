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
* :func:`shuffle_quality`: how close chunk-shuffled batches come to a full shuffle.
"""

from convert.format import FormatError
from loaders.balanced import BalancedSampler
from loaders.batch import ReadBatch
from loaders.chunks import batch_class_entropy, chunk_shuffle_labels, shuffle_quality
from loaders.collate import collate_batch, to_tensors, trim_batch
from loaders.dataset import ShardDataset, ShardSubset
from loaders.iterable import IterableShardDataset
from loaders.loader import ReadLoader
from loaders.sampler import ShuffleBatchSampler, ShuffleSampler, permutation_block, rank_indices

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
    "batch_class_entropy",
    "chunk_shuffle_labels",
    "collate_batch",
    "permutation_block",
    "rank_indices",
    "shuffle_quality",
    "to_tensors",
    "trim_batch",
]
