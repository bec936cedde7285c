"""Read orders as pure functions of (sizes, seed, epoch, placement): no I/O, no state.

* :mod:`loaders.orders.shuffle`: the full uniform shuffle (Feistel bijection) and rank placement.
* :mod:`loaders.orders.chunks`: stored-order and chunk-shuffled passes as groups of row units.
* :mod:`loaders.orders.balanced`: class-balanced draws (class, position within class).

The samplers (:mod:`loaders.sampler`, :mod:`loaders.balanced`) and the chunk reader
(:mod:`loaders.chunks`) are thin stateful wrappers over these.
"""

from loaders.orders.balanced import balanced_draws
from loaders.orders.chunks import Group, chunk_shuffle_groups, chunk_units, group_indices, sequential_groups
from loaders.orders.shuffle import keyed_rng, permutation_block, rank_count, rank_indices

__all__ = [
    "Group",
    "balanced_draws",
    "chunk_shuffle_groups",
    "chunk_units",
    "group_indices",
    "keyed_rng",
    "permutation_block",
    "rank_count",
    "rank_indices",
    "sequential_groups",
]
