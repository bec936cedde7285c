"""Whole-chunk reading: sequential passes, chunk-shuffled epochs, and a shuffle-quality figure.

A *unit* is ``CHUNK_ROWS`` consecutive rows of one shard (the last unit of a shard may be
shorter); in the ``compressed`` layout a unit is exactly one HDF5 chunk, so reading it costs
one decompression. Orders are pure functions of ``(shard sizes, seed, epoch, consumer,
num_consumers)``; a *consumer* is one (rank, DataLoader worker) pair.

Chunk shuffle: the epoch's units are permuted, consumer ``c`` takes every
``num_consumers``-th of them, and each run of ``buffer_chunks`` units is read whole and
its rows permuted together before being cut into batches. A batch therefore mixes reads
from ``buffer_chunks`` random places instead of from the whole dataset;
:func:`shuffle_quality` puts a number on the difference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator, NamedTuple

import numpy as np

from convert.format import CHUNK_ROWS

if TYPE_CHECKING:
    from loaders.dataset import ShardDataset

__all__ = [
    "Group",
    "chunk_units",
    "sequential_groups",
    "chunk_shuffle_groups",
    "group_indices",
    "iter_groups",
    "batch_class_entropy",
    "shuffle_quality",
    "chunk_shuffle_labels",
]


class Group(NamedTuple):
    """Units read together: their shard, first row and row count, and the emission order."""

    shard: np.ndarray  # (k,) int64
    row0: np.ndarray  # (k,) int64
    rows: np.ndarray  # (k,) int64
    perm: np.ndarray | None  # order of the concatenated rows; None = as stored


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) % (1 << 64) for k in key])))


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
    mine = _rng(seed, epoch, 0xC0).permutation(shard.size)[consumer::num_consumers]
    for g, a in enumerate(range(0, mine.size, buffer_chunks)):
        u = mine[a : a + buffer_chunks]
        n = int(rows[u].sum())
        perm = _rng(seed, epoch, 0xC1, num_consumers, consumer, g).permutation(n)
        yield Group(shard[u], row0[u], rows[u], perm)


def group_indices(starts: np.ndarray, group: Group) -> np.ndarray:
    """Global indices of a group's reads in emission order."""
    total = int(group.rows.sum())
    first = np.repeat(starts[group.shard] + group.row0 - np.r_[0, np.cumsum(group.rows)[:-1]], group.rows)
    idx = first + np.arange(total, dtype=np.int64)
    return idx if group.perm is None else idx[group.perm]


def _read_group(ds: "ShardDataset", group: Group) -> dict[str, np.ndarray]:
    parts = [ds.read_rows(s, r0, n) for s, r0, n in zip(group.shard.tolist(), group.row0.tolist(), group.rows.tolist())]
    out = {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in ("input_ids", "lengths", "labels")}
    out["index"] = group_indices(ds.shard_starts, group._replace(perm=None))
    if group.perm is not None:
        out = {k: v[group.perm] for k, v in out.items()}
    return out


def iter_groups(
    ds: "ShardDataset",
    groups: Iterable[Group],
    batch_size: int | None,
    *,
    drop_last: bool = False,
    return_index: bool = False,
) -> Iterator[dict[str, Any]]:
    """Read each group whole and emit batch dicts (or item dicts when ``batch_size`` is None).

    Batches: ``{"input_ids" (B, L) int16, "lengths" (B,) int16, "labels" (B,) int64}``
    (+ ``"index"`` (B,) int64 global indices with ``return_index``). Items: like ``ds[i]``.
    """
    keys = ("input_ids", "lengths", "labels", "index") if return_index else ("input_ids", "lengths", "labels")
    if batch_size is None:
        L = ds.max_length
        ar = np.arange(L)
        for group in groups:
            data = _read_group(ds, group)
            masks = (ar[None, :] < data["lengths"][:, None]).astype(np.int64)
            ids = data["input_ids"].astype(np.int64)  # items are model-ready, like ds[i]
            for k in range(data["labels"].size):
                item = {"input_ids": ids[k], "attention_mask": masks[k], "labels": int(data["labels"][k])}
                if return_index:
                    item["index"] = int(data["index"][k])
                yield item
        return
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    carry: dict[str, np.ndarray] | None = None
    for group in groups:
        data = _read_group(ds, group)
        if carry is not None:
            data = {k: np.concatenate([carry[k], data[k]]) for k in keys}
        n = data["labels"].size
        full = (n // batch_size) * batch_size
        for a in range(0, full, batch_size):
            yield {k: data[k][a : a + batch_size] for k in keys}
        carry = {k: data[k][full:] for k in keys} if full < n else None
    if carry is not None and not drop_last:
        yield carry


def batch_class_entropy(labels: np.ndarray, batch_size: int) -> np.ndarray:
    """Shannon entropy (bits) of the label mix of each full consecutive batch of ``labels``."""
    labels = np.asarray(labels)
    nb = labels.size // batch_size
    if nb == 0:
        return np.empty(0, dtype=np.float64)
    m = np.sort(labels[: nb * batch_size].reshape(nb, batch_size), axis=1)
    new = np.ones(m.shape, dtype=bool)
    new[:, 1:] = m[:, 1:] != m[:, :-1]
    starts = np.flatnonzero(new.ravel())
    runs = np.diff(np.r_[starts, nb * batch_size])
    p = runs / batch_size
    return np.bincount(starts // batch_size, weights=-p * np.log2(p), minlength=nb)


def shuffle_quality(labels_in_order: np.ndarray, batch_size: int, seed: int = 0) -> dict[str, float]:
    """How close an order's batches come to a full uniform shuffle, by class mix.

    Args:
        labels_in_order: labels of the reads in the order they are served.
        batch_size: batch size B.
        seed: seed of the reference full shuffle.

    Returns:
        ``{"mean_entropy", "full_shuffle_entropy", "ratio"}``: mean per-batch class entropy
        (bits) of the order, of a uniform permutation of the same labels, and their ratio
        (1.0 = as mixed as a full shuffle).
    """
    labels = np.asarray(labels_in_order)
    ours = batch_class_entropy(labels, batch_size)
    ref = batch_class_entropy(_rng(seed, 0xE7).permutation(labels), batch_size)
    mean, ref_mean = float(ours.mean()) if ours.size else 0.0, float(ref.mean()) if ref.size else 0.0
    return {
        "mean_entropy": mean,
        "full_shuffle_entropy": ref_mean,
        "ratio": mean / ref_mean if ref_mean > 0 else 1.0,
    }


def chunk_shuffle_labels(
    ds: "ShardDataset",
    seed: int = 0,
    epoch: int = 0,
    buffer_chunks: int = 16,
    consumer: int = 0,
    num_consumers: int = 1,
    chunk_rows: int = CHUNK_ROWS,
) -> np.ndarray:
    """Labels in the order ``ds.iter_chunk_shuffled`` serves them (no tokens read)."""
    groups = chunk_shuffle_groups(ds.shard_counts, seed, epoch, buffer_chunks, consumer, num_consumers, chunk_rows)
    parts = [group_indices(ds.shard_starts, g) for g in groups]
    order = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return ds.labels[order]
