"""Views of a dataset: metadata every view shares, index subsets, and the per-class index.

The per-class index is the CSR each shard stores (``class_offsets`` per shard, ``class_rows``
per read): :class:`ClassIndex` reads the (S, C+1) offsets once and the ``class_rows`` entries
it needs, never a label per read, so a subset of any size is built without a label scan.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from torch.utils.data import Dataset

from loaders.gather import ShardGather, as_index_array

__all__ = ["ViewMixin", "ShardSubset", "ClassIndex", "SubsetBase", "class_list", "subset_rng"]


class SubsetBase(Protocol):
    """What a :class:`ShardSubset` needs of its base (``ShardDataset`` has it)."""

    manifest: Mapping[str, Any]

    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def __getitems__(self, indices: np.ndarray) -> Any: ...

    def gather_vector(self, name: str, indices: Any) -> np.ndarray: ...


def subset_rng(seed: int) -> np.random.Generator:
    """The generator of ``subset(per_class=..., seed=seed)`` (same draws for datasets and views)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) % (1 << 64), 0x5B5E7])))


def class_list(manifest: Mapping[str, Any], classes: Sequence[int | str] | None) -> np.ndarray:
    """Sorted distinct labels named by ``classes`` (ints or label names); None: every label."""
    C = int(manifest["num_classes"])
    if classes is None:
        return np.arange(C, dtype=np.int64)
    names = {name: i for i, name in enumerate(manifest["label_names"])}
    out = []
    for c in classes:
        if isinstance(c, str):
            if c not in names:
                raise KeyError(f"unknown class name {c!r}")
            out.append(names[c])
        else:
            if not 0 <= int(c) < C:
                raise IndexError(f"label {c} outside 0..{C - 1}")
            out.append(int(c))
    return np.unique(np.asarray(out, dtype=np.int64))


class ViewMixin:
    """Metadata every dataset view shares with its base ``ShardDataset``."""

    _base: Any

    @property
    def num_classes(self) -> int:
        """C, the number of contiguous labels."""
        return int(self._base.manifest["num_classes"])

    @property
    def class_names(self) -> list[str]:
        """Label names, index = label."""
        return list(self._base.manifest["label_names"])

    @property
    def tokenizer_info(self) -> dict[str, Any]:
        """The manifest's tokenizer identity dict (name, kind, sha256, vocab_size, pad_id, ...)."""
        return dict(self._base.manifest["tokenizer"])

    @property
    def max_length(self) -> int:
        """L, the padded token length."""
        return int(self._base.manifest["max_length"])

    @property
    def pad_id(self) -> int:
        """The tokenizer's pad id (padding value of ``input_ids``)."""
        return int(self._base.manifest["tokenizer"]["pad_id"])

    @property
    def layout(self) -> str:
        """``"mmap"`` or ``"compressed"``."""
        return str(self._base.manifest["layout"])


class ClassIndex:
    """The per-class CSR index of a dataset's shards, read lazily through its gather."""

    def __init__(self, gather: ShardGather) -> None:
        self.gather = gather
        self._table: np.ndarray | None = None
        self._cum: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"gather": self.gather}  # the caches are rebuilt where they are used

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["gather"])  # type: ignore[misc]

    @property
    def table(self) -> np.ndarray:
        """(S, C+1) int64: each shard's ``class_offsets`` (C+1 ints per shard, not per read)."""
        if self._table is None:
            reader = self.gather.reader
            table = np.zeros((reader.num_shards, self.gather.num_classes + 1), dtype=np.int64)
            for s in range(reader.num_shards):
                table[s] = reader.read_vector(s, "class_offsets")
                reader.check_class_offsets(s, table[s])
            self._table = table
        return self._table

    @property
    def counts(self) -> np.ndarray:
        """(C,) int64 reads per label, from the CSR offsets (no label scan)."""
        return np.diff(self.table, axis=1).sum(axis=0)

    def _cum_class_major(self) -> np.ndarray:
        # Positions ordered class-major, then shard: entry c*S+s starts class c's rows in
        # shard s. (C*S + 1,) int64 - grows with classes x shards, never with reads.
        if self._cum is None:
            per = np.diff(self.table, axis=1).T.reshape(-1)  # (C*S,) class-major
            cum = np.zeros(per.size + 1, dtype=np.int64)
            np.cumsum(per, out=cum[1:])
            self._cum = cum
        return self._cum

    def positions_to_indices(self, classes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Global indices of the ``positions[k]``-th read of label ``classes[k]`` (see ShardDataset)."""
        classes = np.asarray(classes, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        S = self.gather.reader.num_shards
        cum = self._cum_class_major()
        g = cum[classes * S] + positions
        pair = np.searchsorted(cum, g, side="right") - 1
        shard = pair % S
        csr_pos = self.table[shard, classes] + (g - cum[pair])
        rows = np.empty(g.size, dtype=np.int64)
        self.gather.pinned(lambda: self.gather.vector_at("class_rows", shard, csr_pos, rows))
        return self.gather.starts[shard] + rows

    def whole_classes(self, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, labels)`` of every read of labels ``sel``, in ascending index order."""
        return self.gather.pinned(lambda: self._whole_classes(sel))

    def _whole_classes(self, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        table, starts, handles = self.table, self.gather.starts, self.gather.handles
        idx_parts, lab_parts = [], []
        for s in range(table.shape[0]):  # a loop over shards, vectorised within
            lo, hi = table[s, sel], table[s, sel + 1]
            n = hi - lo
            total = int(n.sum())
            if total == 0:
                continue
            # positions lo[c]..hi[c]-1 for every selected class, concatenated
            pos = np.repeat(lo - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(total)
            rows = handles.get(s)["class_rows"][pos]
            idx_parts.append(starts[s] + rows.astype(np.int64))
            lab_parts.append(np.repeat(sel, n).astype(np.int32))
        if not idx_parts:
            return np.empty(0, np.int64), np.empty(0, np.int32)
        idx, lab = np.concatenate(idx_parts), np.concatenate(lab_parts)
        order = np.argsort(idx, kind="stable")
        return idx[order], lab[order]

    def sample(self, sel: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, labels)``: up to ``per_class`` reads of each label in ``sel``, drawn
        uniformly without replacement per ``seed``, in ascending index order."""
        if per_class < 0:
            raise ValueError(f"per_class must be >= 0, got {per_class}")
        counts = self.counts
        rng = subset_rng(seed)
        cls_parts, pos_parts = [], []
        for c in sel.tolist():  # a loop over classes, never over reads
            n_c = int(counts[c])
            k = min(int(per_class), n_c)
            if k == 0:
                continue
            pos_parts.append(rng.choice(n_c, size=k, replace=False).astype(np.int64))
            cls_parts.append(np.full(k, c, dtype=np.int64))
        if not pos_parts:
            return np.empty(0, np.int64), np.empty(0, np.int32)
        cls = np.concatenate(cls_parts)
        idx = self.positions_to_indices(cls, np.concatenate(pos_parts))
        order = np.argsort(idx, kind="stable")
        return idx[order], cls[order].astype(np.int32)


class ShardSubset(ViewMixin, Dataset):
    """A view of a :class:`loaders.ShardDataset`: an int64 index array (and its labels).

    Behaves like the base dataset (``[i]``, ``__getitems__``, ``labels``, ``subset``) and
    pickles as the base's small state plus the index array.
    """

    def __init__(self, base: SubsetBase, indices: np.ndarray, labels: np.ndarray) -> None:
        self._base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self._labels = np.asarray(labels, dtype=np.int32)
        self.indices.flags.writeable = False
        self._labels.flags.writeable = False

    @property
    def base(self) -> Any:
        """The dataset this view selects from (a ``ShardDataset``)."""
        return self._base

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One read of the view (see :meth:`ShardDataset.__getitem__`)."""
        return self._base[int(self.indices[index])]

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> Any:
        """A batch of the view (see :meth:`ShardDataset.__getitems__`)."""
        return self._base.__getitems__(self.indices[as_index_array(indices)])

    @property
    def labels(self) -> np.ndarray:
        """(n,) int32 labels of the view."""
        return self._labels

    @property
    def class_ids(self) -> np.ndarray:
        """(n,) int32 header class ids of the view."""
        return self._base.gather_vector("class_ids", self.indices)

    @property
    def tax_ids(self) -> np.ndarray:
        """(n,) int32 tax ids of the view."""
        return self._base.gather_vector("tax_ids", self.indices)

    @property
    def class_counts(self) -> np.ndarray:
        """(C,) int64 reads per label in the view."""
        return np.bincount(self._labels, minlength=self.num_classes).astype(np.int64)

    def subset(
        self, per_class: int | None = None, *, classes: Sequence[int | str] | None = None, seed: int = 0
    ) -> "ShardSubset":
        """Narrow this view further (same arguments as :meth:`ShardDataset.subset`)."""
        keep = np.ones(len(self), dtype=bool)
        if classes is not None:
            keep = np.isin(self._labels, class_list(self._base.manifest, classes))
        pos = np.flatnonzero(keep)
        if per_class is not None:
            pos = pos[subset_rng(seed).permutation(pos.size)]
            lab = self._labels[pos]
            order = np.argsort(lab, kind="stable")
            pos, lab = pos[order], lab[order]
            starts = np.searchsorted(lab, lab, side="left")
            pos = np.sort(pos[(np.arange(pos.size) - starts) < per_class])
        return ShardSubset(self._base, self.indices[pos], self._labels[pos])
