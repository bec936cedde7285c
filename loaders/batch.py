"""``ReadBatch``: what ``ShardDataset.__getitems__`` returns - a list of reads and a dict of arrays."""

from __future__ import annotations

from typing import Any, ItemsView, Iterator, KeysView, Mapping, ValuesView

import numpy as np

__all__ = ["ReadBatch"]


class ReadBatch:
    """A gathered batch: a list of reads to PyTorch, a dict of arrays to the fast path.

    ``ShardDataset.__getitems__`` returns this. Torch's contract for ``__getitems__`` is
    "a list of samples", so ``len(batch)``, ``batch[k]`` (an int) and iteration give item
    dicts like ``ds[i]``; torch's ``default_collate`` and Hugging Face's
    ``default_data_collator`` therefore build correct (untrimmed, int64) batches from it.
    ``batch["input_ids"]`` (a str), ``keys()``, ``items()`` and ``dict(batch)`` give the
    gathered arrays ``{"input_ids" (B, L) int16, "lengths" (B,) int16, "labels" (B,) int64}``
    that :func:`loaders.collate_batch` / :class:`loaders.ReadLoader` use without a
    per-read step.
    """

    __slots__ = ("_arrays",)

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._arrays = dict(arrays)

    # -- the list of samples torch expects ---------------------------------------------
    def __len__(self) -> int:
        return int(self._arrays["labels"].shape[0])

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._arrays[key]
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            return self._item(int(key))
        raise TypeError(f"a ReadBatch is indexed by a read position (int) or a field name (str), got {type(key).__name__}")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for k in range(len(self)):
            yield self._item(k)

    def _item(self, k: int) -> dict[str, Any]:
        a = self._arrays
        n = len(self)
        if not -n <= k < n:
            raise IndexError(f"read {k} out of range for a batch of {n}")
        ids = a["input_ids"][k].astype(np.int64)
        mask = np.zeros(ids.shape[0], dtype=np.int64)
        mask[: int(a["lengths"][k])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": int(a["labels"][k])}

    # -- the dict of arrays the fast path uses -----------------------------------------
    def keys(self) -> KeysView[str]:
        """Field names (``dict(batch)`` gives the arrays)."""
        return self._arrays.keys()

    def values(self) -> ValuesView[np.ndarray]:
        """The gathered arrays."""
        return self._arrays.values()

    def items(self) -> ItemsView[str, np.ndarray]:
        """``(field, array)`` pairs."""
        return self._arrays.items()

    def __contains__(self, key: object) -> bool:
        return key in self._arrays

    def __getstate__(self) -> dict[str, np.ndarray]:
        return self._arrays

    def __setstate__(self, state: dict[str, np.ndarray]) -> None:
        self._arrays = state

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.shape} {v.dtype}" for k, v in self._arrays.items())
        return f"ReadBatch({len(self)} reads; {shapes})"
