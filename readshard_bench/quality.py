"""How well an order mixes classes: per-batch class entropy against a full shuffle's.

A measurement, not part of loading: the bench reports it for the chunk-shuffled order
(``loaders.chunk_shuffle_labels`` gives the labels in that order).
"""

from __future__ import annotations

import numpy as np

from loaders.orders.shuffle import keyed_rng

__all__ = ["batch_class_entropy", "shuffle_quality"]


def batch_class_entropy(labels: np.ndarray, batch_size: int) -> np.ndarray:
    """Shannon entropy (bits) of the label mix of each full consecutive batch of ``labels``."""
    labels = np.asarray(labels)
    nb = labels.size // batch_size
    if nb == 0:
        return np.empty(0, dtype=np.float64)
    m = np.sort(labels[: nb * batch_size].reshape(nb, batch_size), axis=1)
    new = np.ones(m.shape, dtype=bool)
    new[:, 1:] = m[:, 1:] != m[:, :-1]
    starts = np.flatnonzero(new.ravel())
    runs = np.diff(np.r_[starts, nb * batch_size])
    p = runs / batch_size
    return np.bincount(starts // batch_size, weights=-p * np.log2(p), minlength=nb)


def shuffle_quality(labels_in_order: np.ndarray, batch_size: int, seed: int = 0) -> dict[str, float]:
    """How close an order's batches come to a full uniform shuffle, by class mix.

    Args:
        labels_in_order: labels of the reads in the order they are served.
        batch_size: batch size B.
        seed: seed of the reference full shuffle.

    Returns:
        ``{"mean_entropy", "full_shuffle_entropy", "ratio"}``: mean per-batch class entropy
        (bits) of the order, of a uniform permutation of the same labels, and their ratio
        (1.0 = as mixed as a full shuffle).
    """
    labels = np.asarray(labels_in_order)
    ours = batch_class_entropy(labels, batch_size)
    ref = batch_class_entropy(keyed_rng(seed, 0xE7).permutation(labels), batch_size)
    mean, ref_mean = float(ours.mean()) if ours.size else 0.0, float(ref.mean()) if ref.size else 0.0
    return {
        "mean_entropy": mean,
        "full_shuffle_entropy": ref_mean,
        "ratio": mean / ref_mean if ref_mean > 0 else 1.0,
    }
