"""``numpy_memmap_limit``: the machine's limit for this access pattern.

The same int16 token matrix (plus lengths and labels: the bytes ``__getitems__`` returns)
saved as ``.npy`` and gathered with numpy fancy indexing on ``np.memmap``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from readshard_bench.measure import Measurement, cycle, measure

__all__ = ["bench_limit", "limit_step"]


def limit_step(paths: dict[str, Path], batches: list[np.ndarray], ids_only: bool = False,
               advice: int | None = None) -> tuple[Callable[[], int], Callable[[], None]]:
    """A gather step over plain ``np.memmap`` arrays of the ``.npy`` copies (and a closer).

    ``advice``: an ``mmap.MADV_*`` constant applied to every map (cold runs).
    """
    arrays = {k: np.load(p, mmap_mode="r") for k, p in paths.items()}
    if advice is not None:
        for arr in arrays.values():
            arr._mmap.madvise(advice)  # numpy exposes no public handle to the mmap
    ids, lengths, labels = arrays["input_ids"], arrays["lengths"], arrays["labels"]
    it = iter(cycle(lambda e: batches))

    def step() -> int:
        b = next(it)
        x = ids[b]
        if not ids_only:
            lengths[b]
            labels[b]
        return x.shape[0]

    def close() -> None:
        arrays.clear()

    return step, close


def bench_limit(paths: dict[str, Path], batches: list[np.ndarray], seconds: float, ids_only: bool = False) -> Measurement:
    """``numpy_memmap_limit``: fancy-index gathers on ``np.memmap`` of the ``.npy`` copies."""
    step, close = limit_step(paths, batches, ids_only)
    try:
        return measure(step, seconds, list(paths.values()))
    finally:
        close()
