"""Map-style access to a readshard dataset: O(1) random reads from memory-mapped shards.

Global index ``i`` lives in shard ``s = searchsorted(starts, i, "right") - 1`` at row
``i - starts[s]``, where ``starts`` are the cumulative shard sizes from the manifest.
Nothing that grows with the read count is built at open time; opening needs the manifest
and one ``stat`` per shard (no HDF5 call). This module is the index math and the item/batch
API; the I/O (per-process mappings, the span gather, prefetch) is :mod:`loaders.gather`,
the per-class index and subsets :mod:`loaders.views`, and the orders :mod:`loaders.orders`.
The dataset pickles as paths plus small arrays, so it works under ``fork``, ``spawn`` and
``forkserver`` DataLoader workers.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Dataset

from shards import CHUNK_ROWS, check_compatible
from shards.reader import ShardReader, available_memory, choose_access
from loaders.batch import ReadBatch
from loaders.chunks import iter_groups
from loaders.gather import ShardGather, as_index_array
from loaders.orders.chunks import chunk_shuffle_groups
from loaders.vectors import ReadVectors
from loaders.views import ClassIndex, ShardSubset, ViewMixin, class_list

__all__ = ["ShardDataset", "ShardSubset", "BATCH_KEYS"]

# Keys of the batch dict returned by ``__getitems__``.
BATCH_KEYS = ("input_ids", "lengths", "labels")


class ShardDataset(ViewMixin, ReadVectors, Dataset):
    """A readshard dataset directory as a map-style torch Dataset.

    ``ds[i]`` returns ``{"input_ids": (L,) int64, "attention_mask": (L,) int64, "labels": int}``
    (model-ready, what default collators stack) with the mask built from the stored length
    (never from ``id != pad``). ``ds.__getitems__(indices)`` (used by ``DataLoader`` for
    whole batches) returns a :class:`loaders.batch.ReadBatch`: the gathered arrays
    ``{"input_ids": (B, L) int16, "lengths": (B,) int16, "labels": (B,) int64}`` by key, and
    the list of item dicts torch's ``__getitems__`` contract asks for by position.
    :func:`loaders.collate_batch` takes either form.

    Layout ``compressed``: ``input_ids`` sits in gzip/lzf chunks of ``CHUNK_ROWS`` rows, and
    a random row costs a whole chunk decompression (~1000x slower than a mapped row).
    ``ds[i]`` and ``__getitems__`` still work there (h5py reads, one chunk per distinct
    chunk touched) but are slow; train on that layout with :meth:`iter_chunk_shuffled` or
    ``IterableShardDataset(shuffle=True)``, which read whole chunks in a shuffled order.

    Plain ``DataLoader(ds, batch_size=B, shuffle=True)`` and Hugging Face ``Trainer`` with
    their default collators give correct full-width int64 batches (a per-read Python step);
    the fast path is ``ReadLoader`` or ``collate_fn``/``data_collator=collate_batch``, which
    trims to the longest read and never leaves numpy per read.

    Args:
        path: dataset directory (holding ``manifest.json``).
        verify: also check every shard's sha256 against the manifest (reads all bytes).
        expect_tokenizer: tokenizer identity the caller needs (``name``/``sha256`` compared).
        expect_max_length: L the caller needs.
        max_open_shards: shards of this dataset kept mapped per process (LRU); each costs
            one descriptor on Python < 3.13. Default: every shard the process's descriptor
            budget allows; that budget is shared by every dataset open in the process (the
            soft limit is raised toward the hard one if needed, see :mod:`loaders.handles`).
        access: cold-start policy, ``"auto"`` (default: ``"sequential"`` when the shards fit
            in half the available memory, else ``"random"``), ``"sequential"`` (read each
            shard ahead whole when first mapped) or ``"random"`` (``MADV_RANDOM``: a random
            row faults in its own pages only); see ``shards.reader.choose_access``.
        prefetch: before gathering a cold batch, start reading every row's non-resident
            pages at once (``MADV_WILLNEED``), so the disk serves many reads in parallel
            instead of one fault at a time (see ``loaders.span``). ``None`` (default): on
            when ``access`` resolves to ``"random"``; ``True``/``False`` force it. Once a
            batch finds its pages resident the check stops until a gather is slow again
            (the warm path pays one clock read per batch).

    Raises:
        FormatError: missing/other-version manifest, tokenizer or length mismatch, a
            missing, truncated or (with ``verify``) modified shard, row counts that disagree
            with the manifest's record of the conversion; the message names the file and
            says what to do. Reads raise a ``FormatError`` too for a shard whose class index
            disagrees with the manifest's row count, and ``shards.CorruptRowError``
            for a row whose label (0..C-1) or length (0..L) is out of range.

    Attributes:
        reader: the validated ``shards.ShardReader``; gather: this dataset's
            :class:`loaders.gather.ShardGather` (per-process mappings, span gather, prefetch).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        verify: bool = False,
        expect_tokenizer: Mapping[str, Any] | None = None,
        expect_max_length: int | None = None,
        max_open_shards: int | None = None,
        access: str = "auto",
        prefetch: bool | None = None,
    ) -> None:
        self.path = Path(path)
        reader = ShardReader(self.path, verify=verify)  # manifest validated, shards stat'ed
        reader.check_row_counts()
        check_compatible(
            reader.manifest, tokenizer=expect_tokenizer, max_length=expect_max_length, where=str(self.path)
        )
        self.reader = reader
        self.manifest = reader.manifest
        self._base = self
        self._counts, self._starts = reader.counts, reader.starts
        # Decided once, at open, in the process that opens (workers inherit the decision).
        self.access = choose_access(reader.total_bytes, available_memory(), access)
        advice = getattr(mmap, "MADV_WILLNEED" if self.access == "sequential" else "MADV_RANDOM", None)
        prefetch = self.access == "random" if prefetch is None else bool(prefetch)
        max_open = None if max_open_shards is None else int(max_open_shards)
        self.gather = ShardGather(reader, max_open=max_open, advice=advice, prefetch=prefetch)
        self._classes = ClassIndex(self.gather)
        self._vectors: dict[str, np.ndarray] = {}


    @property
    def prefetch(self) -> bool:
        """Whether a cold batch's pages are prefetched before it is gathered (see ``prefetch``)."""
        return self.gather.prefetch

    @property
    def io_stats(self) -> dict[str, int]:
        """This process's prefetch counters: batches checked for residency, byte ranges issued."""
        return dict(self.gather.io)

    def __getstate__(self) -> dict[str, Any]:
        # Paths and small arrays only: lazily built vectors are per process, rebuilt on use
        # (the gather drops its own per-process state).
        state = self.__dict__.copy()
        state["_vectors"] = {}
        return state

    def close(self) -> None:
        """Unmap every shard this process opened (they reopen on the next access)."""
        self.gather.close()

    # -- sizes ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def num_shards(self) -> int:
        """Number of shard files."""
        return self.reader.num_shards

    @property
    def shard_counts(self) -> np.ndarray:
        """(S,) rows per shard (read-only)."""
        out = self._counts.view()
        out.flags.writeable = False
        return out

    @property
    def shard_files(self) -> list[str]:
        """Paths of the shard files, in shard order."""
        return list(self.reader.files)

    @property
    def shard_starts(self) -> np.ndarray:
        """(S+1,) cumulative row counts: shard ``s`` holds global rows ``starts[s]:starts[s+1]``."""
        return self._starts

    # -- item access ---------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        """One read as ``{"input_ids", "attention_mask", "labels"}`` (copies, not views).

        On the compressed layout this decompresses a whole chunk per call: slow, use the
        chunk-shuffled iteration for training there.
        """
        if not isinstance(index, (int, np.integer)) or isinstance(index, (bool, np.bool_)):
            raise TypeError(f"ShardDataset indices are integers, got {type(index).__name__}")
        i, n = int(index), len(self)  # int() keeps np.uint64 values exact
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} reads")
        ids, length, label = self.gather.row(i)
        mask = np.zeros(ids.shape[0], dtype=np.int64)
        mask[:length] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": label}

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> ReadBatch:
        """A whole batch as a :class:`loaders.batch.ReadBatch`, gathered in one vectorised step.

        ``batch["input_ids"]`` (B, L) int16, ``batch["lengths"]`` (B,) int16 and
        ``batch["labels"]`` (B,) int64 are the gathered arrays (what ``collate_batch`` and
        ``ReadLoader`` use); ``len(batch)``, ``batch[k]`` and iteration give item dicts like
        ``ds[i]``, so torch's default collate and Hugging Face's default collator work too.
        Safe from any number of threads (see :class:`loaders.handles.ShardHandles`).
        """
        idx = indices if isinstance(indices, np.ndarray) and indices.dtype == np.int64 else None
        idx = as_index_array(indices) if idx is None or idx.ndim != 1 else idx
        if idx.size == 0:
            L = self.max_length
            empty = (np.empty((0, L), np.int16), np.empty(0, np.int16), np.empty(0, np.int64))
            return ReadBatch(dict(zip(BATCH_KEYS, empty)))
        handles = self.gather.handles
        handles.pin()
        try:
            return ReadBatch(self.gather.batch(idx))
        finally:
            handles.unpin()

    # -- whole rows without the gather (sequential I/O) -----------------------------
    def read_rows(self, s: int, row0: int, n: int) -> dict[str, np.ndarray]:
        """Rows ``row0 .. row0+n-1`` of shard ``s`` read whole (sequential I/O, read-ahead).

        Returns ``{"input_ids" (n, L) int16, "lengths" (n,) int16, "labels" (n,) int64}``;
        in the compressed layout ``input_ids`` comes from whole HDF5 chunks.
        """
        return self.gather.read_rows(s, row0, n)

    # -- the per-class CSR index and views (see loaders.views) ---------------------------
    @property
    def class_table(self) -> np.ndarray:
        """(S, C+1) int64: each shard's ``class_offsets`` (C+1 ints per shard, not per read)."""
        return self._classes.table

    @property
    def class_counts(self) -> np.ndarray:
        """(C,) int64 reads per label, from the CSR offsets (no label scan)."""
        return self._classes.counts

    def class_positions_to_indices(self, classes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Global indices of the ``positions[k]``-th read of label ``classes[k]``.

        Reads of one label are numbered in shard order, then in stored (row) order. Only
        ``class_rows`` entries at those positions are read.
        """
        return self._classes.positions_to_indices(classes, positions)

    def subset(
        self, per_class: int | None = None, *, classes: Sequence[int | str] | None = None, seed: int = 0
    ) -> ShardSubset:
        """An instant view built from the stored per-class index (no label scan).

        Args:
            per_class: keep at most this many reads per label, chosen uniformly without
                replacement (deterministic per ``seed``); None keeps all.
            classes: keep only these labels (ints) or label names; None keeps all.
            seed: sampling seed for ``per_class``.

        Returns:
            A :class:`ShardSubset` in ascending global index order.
        """
        sel = class_list(self.manifest, classes)
        if per_class is None:
            return ShardSubset(self, *self._classes.whole_classes(sel))
        return ShardSubset(self, *self._classes.sample(sel, per_class, seed))

    def select(self, indices: Any) -> ShardSubset:
        """A view of the given global indices (kept in the given order)."""
        idx = as_index_array(indices)
        self.gather.locate(idx)  # bounds check
        idx = np.where(idx < 0, idx + len(self), idx)
        return ShardSubset(self, idx, self.gather_vector("labels", idx))

    def iter_chunk_shuffled(
        self,
        seed: int = 0,
        epoch: int = 0,
        *,
        buffer_chunks: int = 16,
        batch_size: int = 256,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        return_index: bool = False,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Batches from whole-chunk reads in a shuffled chunk order (any layout).

        The way to train on the ``compressed`` layout: chunks of ``CHUNK_ROWS`` rows are
        visited in a random order (per seed and epoch); ``buffer_chunks`` chunks at a time are
        read whole, their rows are shuffled together and cut into batches. Every read is
        served once per epoch, but a batch draws from ``buffer_chunks`` chunks only, so
        it is less mixed than a full shuffle (converters write reads grouped by source);
        ``readshard_bench.quality.shuffle_quality`` measures how close it comes.

        Yields:
            ``{"input_ids", "lengths", "labels"}`` batch dicts (plus ``"index"`` if asked).
        """
        groups = chunk_shuffle_groups(
            self.shard_counts, seed, epoch, buffer_chunks, consumer=rank, num_consumers=world_size, chunk_rows=chunk_rows
        )
        return iter_groups(self, groups, batch_size, drop_last=drop_last, return_index=return_index)
