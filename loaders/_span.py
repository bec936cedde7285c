"""One gather across every mapped shard: the span table (the only raw-address code).

A batch drawn uniformly from hundreds of shards touches hundreds of them, and a numpy call
per shard would cost more than the copy. Instead the address range spanning every
registered mapping is viewed as one byte-strided array per field (``ctypes`` gives the
buffer), and global row -> address arithmetic gathers the whole batch in one fancy-index
per field.

Invariant (what makes the raw view safe):

1. Only rows of *registered* shards are read: an unregistered shard's base is -2^62, so any
   index computed from it is out of bounds and numpy raises IndexError.
2. A registered shard's mapping stays mapped while any snapshot taken after its
   registration is in use. The owner guarantees it: ``ShardDataset`` registers and
   unregisters under ``ShardHandles.lock``, takes a snapshot there, and gathers while
   pinned, so the closer that unregisters and unmaps runs only when no reader holds a
   snapshot (``ShardHandles`` defers closes while pinned).
3. Row indices are bounds-checked against the dataset before they get here.

The gaps between mappings inside the span are never read (1 and 3).
"""

from __future__ import annotations

import ctypes
from typing import Mapping, NamedTuple

import numpy as np

__all__ = ["SpanTable", "SpanSnapshot", "FIELDS"]

# Fields gathered by address, and their item sizes per row (input_ids: L int16 per row).
FIELDS = ("input_ids", "lengths", "labels")
_UNOPENED = -(1 << 62)


class SpanSnapshot(NamedTuple):
    """Views over the span of the mappings registered when it was taken."""

    base: np.ndarray  # (3, S) int64: field k of global row i of shard s at base[k, s] + i * item[k]
    ids: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray


class SpanTable:
    """Addresses of each shard's ``input_ids``/``lengths``/``labels`` mapping and gathers by them.

    Args:
        starts: (S+1,) cumulative row counts of the shards.
        max_length: L.
    """

    def __init__(self, starts: np.ndarray, max_length: int) -> None:
        self._starts = np.asarray(starts, dtype=np.int64)
        self._counts = np.diff(self._starts)
        self._L = int(max_length)
        self._item = np.array([[2 * self._L], [2], [4]], dtype=np.int64)
        self.addr = np.full((3, self._counts.size), -1, dtype=np.int64)
        self.live = 0
        self._snapshot: SpanSnapshot | None = None

    def register(self, s: int, views: Mapping[str, np.ndarray]) -> int:
        """Record shard ``s``'s mapped views; return a token for :meth:`unregister`."""
        for k, name in enumerate(FIELDS):
            view = views[name]
            if view.dtype != (np.int16, np.int16, np.int32)[k] or not view.flags.c_contiguous:
                raise ValueError(f"span field {name} must be a contiguous {view.dtype} view")
        self.addr[:, s] = [views[name].ctypes.data for name in FIELDS]
        self.live = int((self.addr[0] >= 0).sum())
        self._snapshot = None
        return int(self.addr[0, s])

    def unregister(self, s: int, token: int) -> None:
        """Forget shard ``s`` if ``token`` is still its registration (not a later one)."""
        if self.addr[0, s] == token:
            self.addr[:, s] = -1
            self.live = int((self.addr[0] >= 0).sum())
            self._snapshot = None

    def missing(self, shard: np.ndarray) -> np.ndarray:
        """The entries of ``shard`` (shard numbers) that are not registered."""
        return shard[self.addr[0, shard] < 0]

    def snapshot(self) -> SpanSnapshot:
        """Views over the span of all registered mappings (cached until the next change)."""
        snap = self._snapshot
        if snap is None:
            addr, L = self.addr, self._L
            live = np.flatnonzero(addr[0] >= 0)
            if not live.size:
                raise ValueError("no shard is registered")
            n = self._counts[live]
            lo = int(addr[:, live].min())
            hi = int(max((addr[0, live] + n * L * 2).max(), (addr[1, live] + n * 2).max(), (addr[2, live] + n * 4).max()))
            u8 = np.frombuffer((ctypes.c_char * (hi - lo)).from_address(lo), dtype=np.uint8)
            ids = np.ndarray((hi - lo - 2 * L + 1, L), dtype=np.int16, buffer=u8, strides=(1, 2))
            lens = np.ndarray((hi - lo - 1,), dtype=np.int16, buffer=u8, strides=(1,))
            labs = np.ndarray((hi - lo - 3,), dtype=np.int32, buffer=u8, strides=(1,))
            for view in (ids, lens, labs):
                view.flags.writeable = False
            base = addr - lo - self._starts[None, :-1] * self._item
            base[:, addr[0] < 0] = _UNOPENED
            snap = self._snapshot = SpanSnapshot(base, ids, lens, labs)
        return snap

    def gather(self, snap: SpanSnapshot, shard: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Global rows ``idx`` (in shards ``shard``) as ``input_ids``/``lengths``/``labels`` (int64)."""
        # One take and one broadcast multiply-add for all three fields (each numpy call costs
        # about a microsecond, a fair share of a 256-row batch).
        b = snap.base.take(shard, axis=1)
        b += self._item * idx
        return {
            "input_ids": snap.ids[b[0]],
            "lengths": snap.lengths[b[1]],
            "labels": snap.labels[b[2]].astype(np.int64),
        }
