"""Whole-chunk reading: the I/O behind sequential passes and chunk-shuffled epochs.

The orders (which units, in which order, for which consumer) are pure functions in
:mod:`loaders.orders.chunks`; this module reads the units they name through any object with
``read_rows`` (a :class:`loaders.ShardDataset`) and cuts the rows into batches or items.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol

import numpy as np

from shards import CHUNK_ROWS
from loaders.orders.chunks import Group, chunk_shuffle_groups, group_indices

__all__ = ["RowSource", "LabelledSource", "read_group", "iter_groups", "chunk_shuffle_labels"]


class RowSource(Protocol):
    """What the chunk reader needs of a dataset (``ShardDataset`` has it)."""

    @property
    def shard_starts(self) -> np.ndarray: ...

    @property
    def max_length(self) -> int: ...

    def read_rows(self, s: int, row0: int, n: int) -> dict[str, np.ndarray]: ...


class LabelledSource(Protocol):
    """What :func:`chunk_shuffle_labels` needs of a dataset (``ShardDataset`` has it)."""

    @property
    def shard_starts(self) -> np.ndarray: ...

    @property
    def shard_counts(self) -> np.ndarray: ...

    @property
    def labels(self) -> np.ndarray: ...


def read_group(ds: RowSource, group: Group) -> dict[str, np.ndarray]:
    """A group's rows read whole, unit by unit, in emission order (with their global ``index``)."""
    parts = [ds.read_rows(s, r0, n) for s, r0, n in zip(group.shard.tolist(), group.row0.tolist(), group.rows.tolist())]
    out = {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in ("input_ids", "lengths", "labels")}
    out["index"] = group_indices(ds.shard_starts, group._replace(perm=None))
    if group.perm is not None:
        out = {k: v[group.perm] for k, v in out.items()}
    return out


def iter_groups(
    ds: RowSource,
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
            data = read_group(ds, group)
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
        data = read_group(ds, group)
        if carry is not None:
            data = {k: np.concatenate([carry[k], data[k]]) for k in keys}
        n = data["labels"].size
        full = (n // batch_size) * batch_size
        for a in range(0, full, batch_size):
            yield {k: data[k][a : a + batch_size] for k in keys}
        carry = {k: data[k][full:] for k in keys} if full < n else None
    if carry is not None and not drop_last:
        yield carry


def chunk_shuffle_labels(
    ds: LabelledSource,
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
