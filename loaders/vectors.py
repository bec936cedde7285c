"""Per-read vectors without tokens (labels, lengths, ids, provenance): whole or at indices.

:class:`ReadVectors` is a mixin of :class:`loaders.ShardDataset`; it needs the dataset's
``reader`` (``shards.ShardReader``), ``gather`` (:class:`loaders.gather.ShardGather`)
and a ``_vectors`` dict for its per-process cache (emptied when the dataset is pickled).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shards import ROW_VECTORS
from shards import records_before
from shards.reader import ShardReader
from loaders.gather import ShardGather, as_index_array

__all__ = ["ReadVectors"]


class ReadVectors:
    """Whole per-read vectors (cached) and vectors at global indices (no full concat)."""

    reader: ShardReader
    gather: ShardGather
    _vectors: dict[str, np.ndarray]

    def read_vector(self, s: int, name: str) -> np.ndarray:
        """Shard ``s``'s whole vector ``name`` (e.g. ``labels``) read with one pread."""
        return self.reader.read_vector(s, name)

    def vector(self, name: str) -> np.ndarray:
        """(N,) vector ``name`` of every read, concatenated over the shards once and cached (read-only)."""
        if name not in self._vectors:
            parts = [self.read_vector(s, name) for s in range(self.reader.num_shards)]
            if name in ("labels", "lengths"):  # what samplers count and models index: checked once
                for s, part in enumerate(parts):
                    zeros = np.zeros(part.size, dtype=np.int16)
                    self.reader.check_rows(s, 0, part if name == "lengths" else zeros, zeros if name == "lengths" else part)
            out = np.concatenate(parts) if parts else np.empty(0, dtype=ROW_VECTORS[name])
            out.flags.writeable = False
            self._vectors[name] = out
        return self._vectors[name]

    @property
    def labels(self) -> np.ndarray:
        """(N,) int32 labels of every read (read once from the shards, then cached)."""
        return self.vector("labels")

    @property
    def class_ids(self) -> np.ndarray:
        """(N,) int32 header class ids (cached)."""
        return self.vector("class_ids")

    @property
    def tax_ids(self) -> np.ndarray:
        """(N,) int32 NCBI tax ids, -1 unknown (cached)."""
        return self.vector("tax_ids")

    @property
    def lengths(self) -> np.ndarray:
        """(N,) int16 stored token counts (cached)."""
        return self.vector("lengths")

    @property
    def record_numbers(self) -> np.ndarray:
        """(N,) int64 global input record number of every row (cached; see :mod:`convert.provenance`)."""
        if "record_numbers@global" not in self._vectors:
            base = np.repeat(records_before(self.reader.manifest), self.reader.counts)
            out = self.vector("record_numbers") + base
            out.flags.writeable = False
            self._vectors["record_numbers@global"] = out
        return self._vectors["record_numbers@global"]

    @property
    def fragment_hashes(self) -> np.ndarray:
        """(N,) uint64 FNV-1a 64 of each row's fragment name; mates share it (cached)."""
        return self.vector("fragment_hashes")

    def gather_vector(self, name: str, indices: Any) -> np.ndarray:
        """Vector ``name`` at global ``indices`` from the mapped shards (no full concat)."""
        idx = as_index_array(indices)
        out = np.empty(idx.size, dtype=ROW_VECTORS[name])
        shard, row = self.gather.locate(idx)
        return self.gather.pinned(lambda: self.gather.vector_at(name, shard, row, out))
