"""readshard's own competitors: ``ShardDataset`` per item and batched, the ``compressed``
layout's chunk shuffle, and ``ReadLoader`` (a real DataLoader, 2 workers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from readshard_bench.measure import (
    BATCH_SIZE,
    Measurement,
    MultiEpochBatches,
    RssWatch,
    cycle,
    from_watch,
    measure,
    warm_files,
)

__all__ = [
    "bench_batched",
    "bench_batched_live_sampler",
    "bench_compressed",
    "bench_dataloader",
    "bench_items",
    "bench_sampler_only",
    "shard_files",
]


def shard_files(ds: Any) -> list[str]:
    """The shard files of an open ``ShardDataset`` (from its manifest), to warm or evict."""
    return [str(Path(ds.path) / e["file"]) for e in ds.manifest["shards"]]


def bench_batched(ds: Any, batches: list[np.ndarray], seconds: float) -> Measurement:
    """``readshard_batched``: ``ds.__getitems__`` on the sampler's batches (same as the limit's)."""
    it = iter(cycle(lambda e: batches))
    return measure(lambda: ds.__getitems__(next(it))["labels"].shape[0], seconds, shard_files(ds))


def bench_batched_live_sampler(ds: Any, seconds: float) -> Measurement:
    """``__getitems__`` with ``ShuffleBatchSampler`` generating indices inside the timed loop."""
    from loaders import ShuffleBatchSampler

    sampler = ShuffleBatchSampler(len(ds), BATCH_SIZE, seed=1)

    def epoch(e: int) -> Iterator[np.ndarray]:
        sampler.set_epoch(e)
        return iter(sampler)

    it = cycle(epoch)
    return measure(lambda: ds.__getitems__(next(it))["labels"].shape[0], seconds, shard_files(ds))


def bench_sampler_only(n: int, seconds: float) -> Measurement:
    """Indices per second of ``ShuffleBatchSampler`` alone (the Feistel permutation)."""
    from loaders import ShuffleBatchSampler

    sampler = ShuffleBatchSampler(n, BATCH_SIZE, seed=2)

    def epoch(e: int) -> Iterator[np.ndarray]:
        sampler.set_epoch(e)
        return iter(sampler)

    it = cycle(epoch)
    return measure(lambda: next(it).shape[0], seconds)


def bench_items(ds: Any, seconds: float) -> Measurement:
    """``readshard``: ``ds[i]`` per item in ``ShuffleSampler`` order (256 items per step)."""
    from loaders import ShuffleSampler

    sampler = ShuffleSampler(len(ds), seed=3)

    def epoch(e: int) -> Iterator[int]:
        sampler.set_epoch(e)
        return iter(sampler)

    it = cycle(epoch)

    def step() -> int:
        for _ in range(BATCH_SIZE):
            ds[next(it)]
        return BATCH_SIZE

    return measure(step, seconds, shard_files(ds))


def bench_compressed(path: Path, seconds: float) -> tuple[Measurement, dict[str, float]]:
    """``readshard_compressed``: chunk-shuffled batches; plus its shuffle quality."""
    from loaders import ShardDataset, chunk_shuffle_labels
    from readshard_bench.quality import shuffle_quality

    ds = ShardDataset(path)
    it = cycle(lambda e: ds.iter_chunk_shuffled(seed=0, epoch=e, batch_size=BATCH_SIZE))
    m = measure(lambda: next(it)["labels"].shape[0], seconds, shard_files(ds), warmup_steps=1)
    quality = shuffle_quality(chunk_shuffle_labels(ds, seed=0, epoch=0), BATCH_SIZE)
    ds.close()
    return m, quality


def _identity(batch: Any) -> Any:
    return batch


def bench_dataloader(path: Path, seconds: float, num_workers: int = 2, warmup_batches: int = 20,
                     collate_in_workers: bool = False) -> Measurement:
    """``readshard_dataloader_2_workers``: ``loaders.ReadLoader`` (a real DataLoader, fork), after warm-up.

    ``ReadLoader`` trims batches in the workers (numpy, pickled through the worker pipe) and
    makes the int64 tensors in the main process. With ``collate_in_workers`` the plain
    ``DataLoader(collate_fn=collate_batch)`` path is measured instead: each tensor made in a
    worker crosses through a new shared-memory segment (a diagnostic variant).
    """
    from torch.utils.data import DataLoader

    from loaders import ReadLoader, ShardDataset, ShuffleBatchSampler, collate_batch

    ds = ShardDataset(path)
    sampler = ShuffleBatchSampler(len(ds), BATCH_SIZE, seed=4)
    epochs = max(2, int(seconds * 3e6 / max(1, len(ds))) + 2)  # more than the time box can use
    batches = MultiEpochBatches(sampler, epochs)
    if collate_in_workers:
        loader: Any = DataLoader(ds, batch_sampler=batches, collate_fn=collate_batch,
                                 num_workers=num_workers, prefetch_factor=4)
    else:
        loader = ReadLoader(ds, batches, num_workers=num_workers, prefetch_factor=4)
    post = _identity
    warm_s = warm_files(shard_files(ds))
    with RssWatch() as watch:
        it = iter(loader)
        t_start = time.perf_counter()
        for _ in range(warmup_batches):
            next(it)
        startup = time.perf_counter() - t_start
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        for batch in it:
            n += int(post(batch)["labels"].shape[0])
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - t0
        watch.sample_now()
    del it  # shuts the workers down
    return from_watch(n, elapsed, watch, warm_s, {"startup_plus_warmup_s": round(startup, 3), "num_workers": num_workers})
