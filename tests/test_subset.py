"""Per-species subsets are instant views built from the stored per-class index."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from _loader_helpers import build_dataset
from loaders import ShardDataset, ShardSubset


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("sub") / "ds", shard_sizes=(600, 0, 1000, 37, 250),
                         num_classes=6, class_probs=[0.4, 0.3, 0.2, 0.09, 0.01, 0.0], seed=11)


@pytest.fixture(scope="module")
def ds(built):
    return ShardDataset(built.path)


@pytest.mark.parametrize("per_class", [0, 1, 10, 25, 100, 10_000])
def test_per_class_counts(ds, built, per_class):
    sub = ds.subset(per_class=per_class, seed=0)
    expect = np.minimum(np.bincount(built.arrays["labels"], minlength=6), per_class)
    np.testing.assert_array_equal(sub.class_counts, expect)
    np.testing.assert_array_equal(built.arrays["labels"][sub.indices], sub.labels)
    assert np.unique(sub.indices).size == len(sub)  # without replacement
    assert (np.diff(sub.indices) > 0).all()  # ascending: friendly to sequential reads


def test_per_class_deterministic_per_seed(ds):
    a = ds.subset(per_class=20, seed=1).indices
    np.testing.assert_array_equal(a, ds.subset(per_class=20, seed=1).indices)
    assert not np.array_equal(a, ds.subset(per_class=20, seed=2).indices)


def test_per_class_reaches_every_shard(ds, built):
    sub = ds.subset(per_class=200, seed=0)
    shards = np.searchsorted(ds.shard_starts, sub.indices, side="right") - 1
    assert set(shards.tolist()) == {0, 2, 3, 4}


@pytest.mark.parametrize("classes", [[1], [0, 3], ["species_2", 4], [5], []])
def test_classes(ds, built, classes):
    sub = ds.subset(classes=classes)
    names = [c if isinstance(c, int) else int(c.split("_")[1]) for c in classes]
    expect = np.flatnonzero(np.isin(built.arrays["labels"], names))
    np.testing.assert_array_equal(sub.indices, expect)
    np.testing.assert_array_equal(sub.labels, built.arrays["labels"][expect])


def test_classes_and_per_class(ds, built):
    sub = ds.subset(per_class=15, classes=[0, 4], seed=3)
    counts = np.bincount(built.arrays["labels"], minlength=6)
    assert sub.class_counts.tolist() == [15, 0, 0, 0, min(15, counts[4]), 0]


@pytest.mark.parametrize("bad, exc", [([6], IndexError), ([-1], IndexError), (["nope"], KeyError)])
def test_bad_classes(ds, bad, exc):
    with pytest.raises(exc):
        ds.subset(classes=bad)


def test_view_reads_and_batches(ds, built):
    sub = ds.subset(per_class=30, seed=5)
    a = built.arrays
    for k in (0, len(sub) - 1, 17):
        np.testing.assert_array_equal(sub[k]["input_ids"], a["input_ids"][sub.indices[k]])
    batch = sub.__getitems__([3, 0, len(sub) - 1])
    np.testing.assert_array_equal(batch["labels"], a["labels"][sub.indices[[3, 0, len(sub) - 1]]])
    np.testing.assert_array_equal(sub.class_ids, a["class_ids"][sub.indices])
    np.testing.assert_array_equal(sub.tax_ids, a["tax_ids"][sub.indices])
    assert sub.num_classes == 6 and sub.class_names == ds.class_names and sub.pad_id == ds.pad_id
    clone = pickle.loads(pickle.dumps(sub))
    np.testing.assert_array_equal(clone.__getitems__([1, 2])["input_ids"], a["input_ids"][sub.indices[[1, 2]]])


def test_subset_of_subset_and_select(ds, built):
    sub = ds.subset(classes=[0, 1, 2])
    sub2 = sub.subset(per_class=7, classes=[1, 2], seed=0)
    assert isinstance(sub2, ShardSubset) and sub2.class_counts.tolist() == [0, 7, 7, 0, 0, 0]
    np.testing.assert_array_equal(built.arrays["labels"][sub2.indices], sub2.labels)
    sel = ds.select([1800, 3, -1])
    np.testing.assert_array_equal(sel.indices, [1800, 3, len(ds) - 1])
    np.testing.assert_array_equal(sel.labels, built.arrays["labels"][sel.indices])
