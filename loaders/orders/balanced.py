"""The balanced order (pure, no I/O): a class drawn from C weights, then a uniform read of it.

Global position ``p`` of an epoch is drawn from a random stream keyed by
``(seed, epoch, p // 65536)``, so the draw is a pure function of (seed, epoch, position).
"""

from __future__ import annotations

import numpy as np

from loaders.orders.shuffle import BLOCK, keyed_rng

__all__ = ["balanced_draws"]


def balanced_draws(
    class_counts: np.ndarray, probs_cdf: np.ndarray, seed: int, epoch: int, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(class, position within class) drawn at global ``positions`` of an epoch.

    Args:
        class_counts: (C,) reads per class.
        probs_cdf: (C,) cumulative class probabilities (last entry 1).
        seed: sampler seed.
        epoch: epoch.
        positions: int64 global positions.

    Returns:
        ``(classes, positions_in_class)``, int64 arrays like ``positions``.
    """
    positions = np.asarray(positions, dtype=np.int64)
    cls = np.empty(positions.size, dtype=np.int64)
    within = np.empty(positions.size, dtype=np.int64)
    blocks = positions // BLOCK
    for b in np.unique(blocks).tolist():  # one stream per 65,536 positions
        rng = keyed_rng(seed, epoch, 0xBA1, b)
        c = np.searchsorted(probs_cdf, rng.random(BLOCK), side="right")
        np.minimum(c, probs_cdf.size - 1, out=c)
        u = rng.integers(0, class_counts[c])
        sel = np.flatnonzero(blocks == b)
        off = positions[sel] - b * BLOCK
        cls[sel], within[sel] = c[off], u[off]
    return cls, within
