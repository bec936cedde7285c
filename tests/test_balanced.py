"""BalancedSampler: class, then a uniform read of it; works past 2**24 reads."""

from __future__ import annotations

import numpy as np
import pytest

from _loader_helpers import build_dataset
from loaders import BalancedSampler, ShardDataset


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    # 4 classes at 70/20/9/1 %, and class 4 empty
    return build_dataset(tmp_path_factory.mktemp("bal") / "ds", shard_sizes=(900, 0, 1100, 400),
                         num_classes=5, class_probs=[0.7, 0.2, 0.09, 0.01, 0.0], seed=9)


def test_uniform_over_classes_and_within(skewed):
    ds = ShardDataset(skewed.path)
    s = BalancedSampler(ds, num_samples=40_000, seed=1)
    idx = np.array(list(s))
    assert idx.size == 40_000 and idx.min() >= 0 and idx.max() < len(ds)
    labels = skewed.arrays["labels"][idx]
    frac = np.bincount(labels, minlength=5) / idx.size
    np.testing.assert_allclose(frac[:4], 0.25, atol=0.015)
    assert frac[4] == 0  # an empty class is never drawn
    # within the rarest class, every read is reachable and roughly uniform
    rare = np.flatnonzero(skewed.arrays["labels"] == 3)
    hits = np.bincount(np.searchsorted(rare, idx[labels == 3]), minlength=rare.size)
    assert (hits > 0).all()
    assert hits.max() < 4 * hits.mean()


def test_class_weights(skewed):
    ds = ShardDataset(skewed.path)
    w = [1.0, 0.0, 3.0, 0.0, 5.0]  # weight on the empty class is ignored
    idx = np.array(list(BalancedSampler(ds, 20_000, seed=2, class_weights=w)))
    frac = np.bincount(skewed.arrays["labels"][idx], minlength=5) / idx.size
    np.testing.assert_allclose(frac, [0.25, 0, 0.75, 0, 0], atol=0.015)


def test_deterministic_per_seed_and_epoch(skewed):
    ds = ShardDataset(skewed.path)
    a = BalancedSampler(ds, 3000, seed=4)
    e0 = list(a)
    assert list(BalancedSampler(ds, 3000, seed=4)) == e0
    a.set_epoch(1)
    assert list(a) != e0
    assert list(BalancedSampler(ds, 3000, seed=5)) != e0


def test_ranks_and_resume(skewed):
    ds = ShardDataset(skewed.path)
    whole = np.array(list(BalancedSampler(ds, 1001, seed=3)))
    parts = [np.array(list(BalancedSampler(ds, 1001, seed=3, rank=r, world_size=2))) for r in range(2)]
    assert parts[0].size == parts[1].size == 501
    np.testing.assert_array_equal(np.stack(parts, 1).reshape(-1)[:1001], whole)
    s = BalancedSampler(ds, 1001, seed=3)
    it = iter(s)
    [next(it) for _ in range(300)]
    s2 = BalancedSampler(ds, 1001, seed=3)
    s2.load_state_dict(s.state_dict())
    np.testing.assert_array_equal(np.array(list(s2)), whole[300:])


def test_subset_source_gives_subset_indices(skewed):
    ds = ShardDataset(skewed.path)
    sub = ds.subset(classes=[0, 3])
    idx = np.array(list(BalancedSampler(sub, 4000, seed=0)))
    assert idx.max() < len(sub)
    frac = np.bincount(sub.labels[idx], minlength=5) / idx.size
    np.testing.assert_allclose(frac[[0, 3]], 0.5, atol=0.03)


def test_past_2_pow_24_with_class_counts_only():
    """33.5 M reads over 3 classes: indices beyond 2**24 come out, memory stays small."""
    counts = np.array([2**24 + 5, 2**23, 2**24 - 3 * 2**22], dtype=np.int64)
    total = int(counts.sum())
    assert total > 2**24
    s = BalancedSampler(counts, num_samples=300_000, seed=0, class_weights=[1, 1, 2])
    assert len(s) == 300_000
    idx = np.fromiter(iter(s), dtype=np.int64, count=300_000)
    bounds = np.r_[0, np.cumsum(counts)]
    cls = np.searchsorted(bounds, idx, side="right") - 1
    np.testing.assert_allclose(np.bincount(cls, minlength=3) / idx.size, [0.25, 0.25, 0.5], atol=0.01)
    assert idx.max() > 2**24 and idx.min() >= 0 and idx.max() < total
    # within class 0 (2**24+5 reads) the draw is uniform: both halves equally hit
    c0 = idx[cls == 0]
    assert abs((c0 < counts[0] // 2).mean() - 0.5) < 0.01


@pytest.mark.parametrize("weights", [[1, 2], [-1, 1, 1], [np.nan, 1, 1], [0, 0, 0]])
def test_bad_weights(weights):
    with pytest.raises(ValueError):
        BalancedSampler(np.array([5, 5, 5]), 10, class_weights=weights)
