"""ShardDataset: items and batches equal the written data, in both layouts."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from _loader_helpers import build_dataset
from loaders import ShardDataset


@pytest.fixture(scope="module", params=["mmap", "compressed"])
def built(request, tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp(request.param) / "ds", layout=request.param, seed=3)


def test_metadata(built):
    ds = ShardDataset(built.path)
    assert len(ds) == len(built) == 2513
    assert ds.num_shards == 4 and ds.layout == built.layout
    assert ds.num_classes == built.num_classes
    assert ds.class_names == [f"species_{c}" for c in range(built.num_classes)]
    assert ds.tokenizer_info == built.tokenizer
    assert ds.max_length == built.max_length
    assert ds.pad_id == built.tokenizer["pad_id"]
    assert ds.shard_starts.tolist() == [0, 700, 700, 2000, 2513]


def test_items_equal_written(built):
    ds = ShardDataset(built.path)
    a = built.arrays
    # first/last row of every non-empty shard, negatives, and a spread in between
    for i in [0, 699, 700, 1999, 2000, 2512, -1, -2513, *range(3, 2513, 97)]:
        item = ds[i]
        j = i % len(ds)
        assert item["input_ids"].dtype == np.int64 and item["input_ids"].shape == (built.max_length,)
        np.testing.assert_array_equal(item["input_ids"], a["input_ids"][j])
        assert item["attention_mask"].dtype == np.int64
        assert int(item["attention_mask"].sum()) == int(a["lengths"][j])
        assert item["labels"] == int(a["labels"][j]) and isinstance(item["labels"], int)
    ds[np.int64(5)]  # numpy integers are indices too


@pytest.mark.parametrize("path", ["span", "span_numpy", "per_shard"])
@pytest.mark.parametrize("indices", [
    "random", "sorted", "one_shard", "single", "empty", "duplicates", "negative",
])
def test_getitems_equal_written(built, indices, path):
    ds = ShardDataset(built.path)
    ds.gather.span = path != "per_shard"
    ds.gather.kernel = path == "span"  # the compiled pass (when numba imports) or the table's numpy path
    rng = np.random.default_rng(0)
    idx = {
        "random": rng.integers(0, 2513, 256),
        "sorted": np.sort(rng.integers(0, 2513, 300)),
        "one_shard": rng.integers(700, 2000, 64),
        "single": np.array([2512]),
        "empty": np.array([], dtype=np.int64),
        "duplicates": np.array([5, 5, 1800, 5, 1800]),
        "negative": np.array([-1, 0, -2513, 2000]),
    }[indices]
    batch = ds.__getitems__(idx.tolist() if indices == "random" else idx)
    a = built.arrays
    assert set(batch.keys()) == {"input_ids", "lengths", "labels"}
    assert batch["input_ids"].dtype == np.int16 and batch["input_ids"].shape == (idx.size, built.max_length)
    assert batch["lengths"].dtype == np.int16 and batch["labels"].dtype == np.int64
    np.testing.assert_array_equal(batch["input_ids"], a["input_ids"][idx])
    np.testing.assert_array_equal(batch["lengths"], a["lengths"][idx])
    np.testing.assert_array_equal(batch["labels"], a["labels"][idx])


@pytest.mark.parametrize("bad", [2513, -2514, 10**12])
def test_out_of_range(built, bad):
    ds = ShardDataset(built.path)
    with pytest.raises(IndexError):
        ds[bad]
    with pytest.raises(IndexError):
        ds.__getitems__([0, bad])


@pytest.mark.parametrize("bad", [1.5, "3", slice(0, 2)])
def test_non_integer_index(built, bad):
    with pytest.raises(TypeError):
        ShardDataset(built.path)[bad]


def test_vectors_without_tokens(built):
    ds = ShardDataset(built.path)
    for name in ("labels", "class_ids", "tax_ids", "lengths"):
        got = getattr(ds, name)
        np.testing.assert_array_equal(got, built.arrays[name])
        assert got is getattr(ds, name)  # cached
    np.testing.assert_array_equal(ds.class_counts, np.bincount(built.arrays["labels"], minlength=built.num_classes))
    idx = np.array([2512, 0, 1500])
    np.testing.assert_array_equal(ds.gather_vector("tax_ids", idx), built.arrays["tax_ids"][idx])


def test_attention_mask_from_lengths_not_pad(tmp_path):
    """A pad id inside a read (and garbage after it) must not change the mask."""

    def hook(ids, lengths):
        ids[:, 1] = 0  # pad id inside every read
        ids[np.arange(len(ids)) % 2 == 0, -1] = 77  # a non-pad value in the padding

    built = build_dataset(tmp_path / "ds", shard_sizes=(40, 30), ids_hook=hook)
    ds = ShardDataset(built.path)
    for i in range(len(ds)):
        mask = ds[i]["attention_mask"]
        n = int(built.arrays["lengths"][i])
        assert mask[:n].all() and not mask[n:].any()


def test_pickle_after_first_access_is_small_and_works(built):
    ds = ShardDataset(built.path)
    ds[0]
    ds.__getitems__([1, 2000])
    ds.labels  # a cached per-read vector must not travel either
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000, len(blob)
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.__getitems__([3, 2100])["input_ids"], built.arrays["input_ids"][[3, 2100]])


@pytest.mark.parametrize("max_open", [1, 2])
def test_lru_bounds_open_shards(built, max_open):
    """Fewer open shards than a batch spans: evictions never unmap what a gather reads."""
    ds = ShardDataset(built.path, max_open_shards=max_open)
    rng = np.random.default_rng(1)
    for _ in range(8):
        idx = rng.integers(0, len(ds), 100)
        np.testing.assert_array_equal(ds.__getitems__(idx)["input_ids"], built.arrays["input_ids"][idx])
        assert len(ds.gather.handles) <= max_open
        one = rng.integers(0, len(ds))
        np.testing.assert_array_equal(ds.__getitems__([one])["input_ids"][0], built.arrays["input_ids"][one])
    ds.close()
    assert len(ds.gather.handles) == 0
    assert ds[2500]["labels"] == int(built.arrays["labels"][2500])


def test_fork_child_reopens(built):
    """A forked child must not use the parent's maps (cache keyed by pid)."""
    import multiprocessing as mp

    ds = ShardDataset(built.path)
    ds[0]
    parent_handles = ds.gather.handles._open
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def child():
        item = ds[2000]
        q.put((os.getpid() == ds.gather.handles._pid, ds.gather.handles._open is not parent_handles, item["labels"]))

    p = ctx.Process(target=child)
    p.start()
    p.join(30)
    same_pid, fresh_cache, label = q.get(timeout=5)
    assert p.exitcode == 0 and same_pid and fresh_cache
    assert label == int(built.arrays["labels"][2000])
