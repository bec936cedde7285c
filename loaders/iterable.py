"""Iterable access: one sequential pass (e.g. inference) or chunk-shuffled epochs.

Work is split in whole units of ``CHUNK_ROWS`` rows over every (rank, DataLoader worker)
pair, so each read is served exactly once per pass across all of them and every unit is
read with one sequential ``pread`` (or one chunk decompression in the compressed layout).
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import get_spawning_popen
from typing import Any, Iterator

from torch.utils.data import IterableDataset, get_worker_info

from shards import CHUNK_ROWS
from loaders.chunks import iter_groups
from loaders.dataset import ShardDataset
from loaders.orders.chunks import chunk_shuffle_groups, sequential_groups

__all__ = ["IterableShardDataset"]


def _dist_placement() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class IterableShardDataset(IterableDataset):
    """A readshard dataset as a torch IterableDataset, sharded over ranks and workers.

    Sequential mode (default) serves units in stored order, unit ``u`` going to consumer
    ``u mod (world_size * num_workers)``: every read exactly once per pass, no padding (ranks
    may get up to one unit more than others; for DDP training use a map-style sampler or
    stop on the shortest rank). With ``return_index=True`` each item/batch carries its global
    ``index`` so outputs can be put back in order. ``shuffle=True`` serves chunk-shuffled
    epochs (see :meth:`ShardDataset.iter_chunk_shuffled`): the way to train on the
    ``compressed`` layout.

    Args:
        source: dataset directory or an open :class:`ShardDataset`.
        batch_size: yield batch dicts of this size (use ``DataLoader(batch_size=None,
            collate_fn=collate_batch)``); None yields item dicts like ``ds[i]``.
        shuffle: chunk-shuffled order instead of stored order.
        seed: shuffle seed.
        buffer_chunks: units mixed together in shuffle mode.
        rank: this process's rank (default: from torch.distributed, else 0).
        world_size: number of ranks (default: from torch.distributed, else 1).
        drop_last: drop each consumer's final partial batch.
        return_index: add the global ``index`` of each read.
        chunk_rows: rows per unit of work (default: the HDF5 chunk of the compressed layout).
        **dataset_kwargs: passed to :class:`ShardDataset` when ``source`` is a path.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | ShardDataset,
        *,
        batch_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        buffer_chunks: int = 16,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        return_index: bool = False,
        chunk_rows: int = CHUNK_ROWS,
        **dataset_kwargs: Any,
    ) -> None:
        self.dataset = source if isinstance(source, ShardDataset) else ShardDataset(source, **dataset_kwargs)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.buffer_chunks = int(buffer_chunks)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = bool(drop_last)
        self.return_index = bool(return_index)
        self.chunk_rows = int(chunk_rows)
        # The epoch lives in shared memory: DataLoader workers (also persistent ones, which
        # keep the copy of this object they started with) read it at each new pass.
        self._epoch = multiprocessing.RawValue("q", 0)

    @property
    def epoch(self) -> int:
        """The shuffle epoch the next pass uses (in this process and its DataLoader workers)."""
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle epoch of the next pass; reaches running (persistent) workers too."""
        self._epoch.value = int(epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if get_spawning_popen() is None:
            # An ordinary pickle (not a worker being started): the shared cell cannot travel,
            # its value does.
            state["_epoch"] = int(self._epoch.value)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("_epoch"), int):
            value = state["_epoch"]
            state["_epoch"] = multiprocessing.RawValue("q", value)
        self.__dict__.update(state)

    @property
    def num_reads(self) -> int:
        """Reads in one full pass over all consumers."""
        return len(self.dataset)

    def _placement(self) -> tuple[int, int]:
        rank, world = _dist_placement()
        rank = rank if self.rank is None else int(self.rank)
        world = world if self.world_size is None else int(self.world_size)
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info is not None else (1, 0)
        return rank * workers + wid, world * workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        consumer, consumers = self._placement()
        counts = self.dataset.shard_counts
        if self.shuffle:
            groups = chunk_shuffle_groups(
                counts, self.seed, self.epoch, self.buffer_chunks, consumer, consumers, self.chunk_rows
            )
        else:
            groups = sequential_groups(counts, consumer, consumers, self.chunk_rows)
        return iter_groups(
            self.dataset, groups, self.batch_size, drop_last=self.drop_last, return_index=self.return_index
        )
