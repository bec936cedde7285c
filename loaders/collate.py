"""Collate reads into model inputs: trim to the longest read, widen to int64 late."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from loaders.batch import ReadBatch

__all__ = ["collate_batch", "trim_batch", "to_tensors"]


def _np(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def trim_batch(batch: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Worker-side half of :func:`collate_batch`: numpy only, ids still int16.

    Returns ``{"input_ids" (B, W) int16, "lengths" (B,) int64, "labels" (B,) int64[, "index"]}``
    with W the longest read of the batch. Numpy arrays cross from DataLoader workers as
    plain pickles; tensors made in a worker each cost a shared-memory segment (~5 ms a
    batch here), which is why :class:`loaders.ReadLoader` widens in the main process.

    Raises:
        TypeError: the input is neither a batch dict nor a list of item dicts.
    """
    if isinstance(batch, (ReadBatch, Mapping)):
        ids = _np(batch["input_ids"])
        if "lengths" in batch:
            lengths = _np(batch["lengths"]).astype(np.int64)
        else:
            lengths = _np(batch["attention_mask"]).astype(np.int64).sum(axis=1)
        labels = _np(batch["labels"]) if "labels" in batch else None
        index = _np(batch["index"]) if "index" in batch else None
    else:
        items = list(batch)
        if not items or not all(isinstance(it, Mapping) for it in items):
            raise TypeError(
                "collate_batch expects a list of item dicts or one batch dict; got "
                f"{[type(it).__name__ for it in items[:3]]}. If a wrapper split a __getitems__ "
                "batch dict (Hugging Face Trainer does with remove_unused_columns=True), set "
                "TrainingArguments(remove_unused_columns=False)."
            )
        ids = np.stack([_np(it["input_ids"]) for it in items])
        if "lengths" in items[0]:
            lengths = np.array([int(it["lengths"]) for it in items], dtype=np.int64)
        else:
            lengths = np.stack([_np(it["attention_mask"]) for it in items]).astype(np.int64).sum(axis=1)
        labels = np.array([int(it["labels"]) for it in items], dtype=np.int64) if "labels" in items[0] else None
        index = np.array([int(it["index"]) for it in items], dtype=np.int64) if "index" in items[0] else None
    width = max(1, int(lengths.max())) if lengths.size else 1
    width = min(width, ids.shape[1]) if ids.ndim == 2 else width
    out = {"input_ids": np.ascontiguousarray(ids[:, :width]), "lengths": lengths}
    if labels is not None:
        out["labels"] = np.asarray(labels, dtype=np.int64)
    if index is not None:
        out["index"] = np.asarray(index, dtype=np.int64)
    return out


def to_tensors(batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Main-process half of :func:`collate_batch`: int64 tensors and the attention mask."""
    ids = batch["input_ids"]
    lengths = batch["lengths"]
    width = ids.shape[1]
    out = {
        "input_ids": torch.from_numpy(ids.astype(np.int64)),
        "attention_mask": torch.from_numpy((np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)),
    }
    for key in ("labels", "index"):
        if key in batch:
            out[key] = torch.from_numpy(np.asarray(batch[key], dtype=np.int64))
    return out


def collate_batch(batch: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Turn reads into ``{"input_ids", "attention_mask", "labels"}`` int64 tensors.

    Accepts the batch of ``ShardDataset.__getitems__`` (a :class:`loaders.batch.ReadBatch`)
    or a batch dict of ``IterableShardDataset`` (``input_ids`` (B, L), ``lengths`` (B,),
    ``labels`` (B,)), or a list of item dicts
    (``input_ids`` (L,), ``attention_mask`` (L,), ``labels``) as the default DataLoader
    path and Hugging Face ``Trainer(data_collator=collate_batch)`` pass. Columns are cut
    to the longest read of the batch; the mask comes from stored lengths. An ``index``
    entry, if present, is passed through. For a fast multi-worker DataLoader use
    :class:`loaders.ReadLoader`, which runs :func:`trim_batch` in the workers and
    :func:`to_tensors` here.

    Raises:
        TypeError: the input is neither form (e.g. a batch dict split into its keys by a
            wrapper such as Trainer's ``remove_unused_columns``; set that to False).
    """
    return to_tensors(trim_batch(batch))
