"""``ReadLoader``: a torch DataLoader over whole batches that widens to tensors late.

Workers gather a batch with ``__getitems__`` and trim it (:func:`loaders.collate.trim_batch`,
numpy); the main process makes the int64 tensors and the mask
(:func:`loaders.collate.to_tensors`). Tensors created inside workers are each passed
through a new shared-memory segment, which measured ~4x slower here (see ``loaders.bench``).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from loaders.collate import to_tensors, trim_batch

__all__ = ["ReadLoader"]


class ReadLoader:
    """Iterate ``{"input_ids", "attention_mask", "labels"}`` int64 tensor batches.

    Args:
        dataset: a map-style dataset with ``__getitems__`` (``ShardDataset`` or a subset).
        batch_sampler: yields index batches (e.g. ``ShuffleBatchSampler``); its
            ``set_epoch`` / ``state_dict`` are reached through ``loader.batch_sampler``.
        num_workers: DataLoader worker processes.
        pin_memory: pin the tensors (in the main process, after widening).
        **kwargs: passed to ``torch.utils.data.DataLoader`` (``multiprocessing_context``,
            ``persistent_workers``, ``prefetch_factor``, ``timeout``, ...).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_sampler: Sampler[Any],
        *,
        num_workers: int = 2,
        pin_memory: bool = False,
        **kwargs: Any,
    ) -> None:
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self._loader = DataLoader(
            dataset, batch_sampler=batch_sampler, collate_fn=trim_batch, num_workers=num_workers, **kwargs
        )

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self._loader:
            out = to_tensors(batch)
            if self.pin_memory:
                out = {k: v.pin_memory() for k, v in out.items()}
            yield out
