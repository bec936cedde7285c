"""Chunk orders (pure, no I/O): sequential passes and chunk-shuffled epochs, as groups of units.

A *unit* is ``CHUNK_ROWS`` consecutive rows of one shard (the last unit of a shard may be
shorter); in the ``compressed`` layout a unit is exactly one HDF5 chunk, so reading it costs
one decompression. Orders are pure functions of ``(shard sizes, seed, epoch, consumer,
num_consumers)``; a *consumer* is one (rank, DataLoader worker) pair.

Chunk shuffle: the epoch's units are permuted, consumer ``c`` takes every
``num_consumers``-th of them, and each run of ``buffer_chunks`` units is read whole and
its rows permuted together before being cut into batches. A batch therefore mixes reads
from ``buffer_chunks`` random places instead of from the whole dataset;
``readshard_bench.quality.shuffle_quality`` puts a number on the difference.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from shards import CHUNK_ROWS
from loaders.orders.shuffle import keyed_rng

__all__ = ["Group", "chunk_units", "sequential_groups", "chunk_shuffle_groups", "group_indices"]


class Group(NamedTuple):
    """Units read together: their shard, first row and row count, and the emission order."""

    shard: np.ndarray  # (k,) int64
    row0: np.ndarray  # (k,) int64
    rows: np.ndarray  # (k,) int64
    perm: np.ndarray | None  # order of the concatenated rows; None = as stored


def chunk_units(counts: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split shards of ``counts`` rows into units: ``(shard, row0, rows)`` int64 arrays."""
    counts = np.asarray(counts, dtype=np.int64)
    per = -(-counts // chunk_rows)
    shard = np.repeat(np.arange(counts.size, dtype=np.int64), per)
    first = np.r_[0, np.cumsum(per)[:-1]].astype(np.int64)
    row0 = (np.arange(shard.size, dtype=np.int64) - first[shard]) * chunk_rows
    rows = np.minimum(chunk_rows, counts[shard] - row0)
    return shard, row0, rows


def sequential_groups(
    counts: np.ndarray, consumer: int = 0, num_consumers: int = 1, chunk_rows: int = CHUNK_ROWS
) -> Iterator[Group]:
    """Units in stored order, consumer ``c`` taking units ``c, c+N, ...`` (each read once)."""
    shard, row0, rows = chunk_units(counts, chunk_rows)
    for u in range(consumer, shard.size, num_consumers):
        yield Group(shard[u : u + 1], row0[u : u + 1], rows[u : u + 1], None)


def chunk_shuffle_groups(
    counts: np.ndarray,
    seed: int,
    epoch: int,
    buffer_chunks: int = 16,
    consumer: int = 0,
    num_consumers: int = 1,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[Group]:
    """The chunk-shuffled epoch of one consumer, ``buffer_chunks`` units per group.

    Memory: one int64 per unit (``num_reads / chunk_rows``), not per read.
    """
    if buffer_chunks < 1:
        raise ValueError(f"buffer_chunks must be >= 1, got {buffer_chunks}")
    if not 0 <= consumer < num_consumers:
        raise ValueError(f"consumer {consumer} outside 0..{num_consumers - 1}")
    shard, row0, rows = chunk_units(counts, chunk_rows)
    mine = keyed_rng(seed, epoch, 0xC0).permutation(shard.size)[consumer::num_consumers]
    for g, a in enumerate(range(0, mine.size, buffer_chunks)):
        u = mine[a : a + buffer_chunks]
        n = int(rows[u].sum())
        perm = keyed_rng(seed, epoch, 0xC1, num_consumers, consumer, g).permutation(n)
        yield Group(shard[u], row0[u], rows[u], perm)


def group_indices(starts: np.ndarray, group: Group) -> np.ndarray:
    """Global indices of a group's reads in emission order."""
    total = int(group.rows.sum())
    first = np.repeat(starts[group.shard] + group.row0 - np.r_[0, np.cumsum(group.rows)[:-1]], group.rows)
    idx = first + np.arange(total, dtype=np.int64)
    return idx if group.perm is None else idx[group.perm]
