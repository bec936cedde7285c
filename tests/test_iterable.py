"""Whole-chunk reading: sequential passes, chunk-shuffled epochs (compressed layout), quality."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader

from _loader_helpers import build_dataset
from loaders import IterableShardDataset, ShardDataset, chunk_shuffle_labels, collate_batch
from loaders.orders.chunks import chunk_shuffle_groups, group_indices, sequential_groups
from readshard_bench.quality import batch_class_entropy, shuffle_quality


# Real shards use 4096-row chunks; 64-row units give these small datasets many units.
CR = 64


@pytest.fixture(scope="module", params=["mmap", "compressed"])
def built(request, tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("it") / "ds", shard_sizes=(500, 0, 700, 130), layout=request.param,
                         grouped=True, num_classes=8, seed=17)


def _check_batch(batch, built):
    a = built.arrays
    idx = batch["index"]
    np.testing.assert_array_equal(batch["input_ids"], a["input_ids"][idx])
    np.testing.assert_array_equal(batch["lengths"], a["lengths"][idx])
    np.testing.assert_array_equal(batch["labels"], a["labels"][idx])


@pytest.mark.parametrize("counts, consumers", [((500, 0, 700, 130), 3), ((0,), 2), ((64, 64, 1), 1), ((5,), 4)])
def test_group_functions_cover_each_read_once(counts, consumers):
    starts = np.r_[0, np.cumsum(counts)]
    for make in (lambda c: sequential_groups(counts, c, consumers, 64),
                 lambda c: chunk_shuffle_groups(counts, 1, 2, 3, c, consumers, 64)):
        got = np.concatenate([np.empty(0, np.int64)] + [group_indices(starts, g) for c in range(consumers)
                                                        for g in make(c)])
        np.testing.assert_array_equal(np.sort(got), np.arange(sum(counts)))


def test_chunk_shuffled_epoch(built):
    ds = ShardDataset(built.path)
    batches = list(ds.iter_chunk_shuffled(seed=1, epoch=0, buffer_chunks=4, batch_size=100, return_index=True,
                                         chunk_rows=CR))
    assert [len(b["labels"]) for b in batches[:-1]] == [100] * (len(batches) - 1)
    order = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(np.sort(order), np.arange(len(ds)))
    for b in batches:
        _check_batch(b, built)
    again = np.concatenate([b["index"] for b in ds.iter_chunk_shuffled(1, 0, buffer_chunks=4, batch_size=100,
                                                                           return_index=True, chunk_rows=CR)])
    np.testing.assert_array_equal(order, again)
    other = np.concatenate([b["index"] for b in ds.iter_chunk_shuffled(1, 1, buffer_chunks=4, batch_size=100,
                                                                           return_index=True, chunk_rows=CR)])
    assert not np.array_equal(order, other)
    np.testing.assert_array_equal(built.arrays["labels"][order], chunk_shuffle_labels(ds, 1, 0, 4, chunk_rows=CR))


def test_chunk_shuffle_ranks_partition(built):
    ds = ShardDataset(built.path)
    parts = [np.concatenate([b["index"] for b in ds.iter_chunk_shuffled(2, 0, batch_size=64, rank=r, world_size=2,
                                                                          return_index=True, chunk_rows=CR)]) for r in range(2)]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(ds)))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("shuffle", [False, True])
def test_iterable_loader_sees_each_read_once(built, workers, shuffle):
    seen, parts = [], []
    for rank in range(2):
        it = IterableShardDataset(built.path, batch_size=32, shuffle=shuffle, seed=4, rank=rank, world_size=2,
                                  return_index=True, chunk_rows=CR)
        loader = DataLoader(it, batch_size=None, collate_fn=collate_batch, num_workers=workers,
                            multiprocessing_context="fork" if workers else None)
        rank_seen = []
        for out in loader:
            idx = out["index"].numpy()
            w = out["input_ids"].shape[1]
            np.testing.assert_array_equal(out["input_ids"].numpy(), built.arrays["input_ids"][idx, :w])
            np.testing.assert_array_equal(out["labels"].numpy(), built.arrays["labels"][idx])
            seen.append(idx)
            rank_seen.append(idx)
        parts.append(np.concatenate(rank_seen))
    allidx = np.concatenate(seen)
    np.testing.assert_array_equal(np.sort(allidx), np.arange(len(built)))
    if not shuffle and workers == 0:  # one consumer per rank, units round-robin: stored order within a rank
        assert all((np.diff(p) > 0).all() for p in parts)


def test_iterable_items_mode(built):
    it = IterableShardDataset(ShardDataset(built.path), return_index=True, chunk_rows=CR)
    items = list(it)
    assert len(items) == len(built)
    for item in items[::37]:
        i = item["index"]
        np.testing.assert_array_equal(item["input_ids"], built.arrays["input_ids"][i])
        assert item["attention_mask"].sum() == built.arrays["lengths"][i]
        assert item["labels"] == built.arrays["labels"][i]
    out = collate_batch([{k: v for k, v in x.items() if k != "index"} for x in items[:8]])
    assert out["input_ids"].shape[0] == 8


def test_entropy_and_shuffle_quality():
    assert batch_class_entropy(np.zeros(64, int), 32).tolist() == [0.0, 0.0]
    np.testing.assert_allclose(batch_class_entropy(np.tile(np.arange(4), 8), 32), [2.0])
    grouped = np.repeat(np.arange(50), 200)
    q_sorted = shuffle_quality(grouped, 100)
    q_full = shuffle_quality(np.random.default_rng(0).permutation(grouped), 100)
    assert q_sorted["ratio"] < 0.1 and 0.97 < q_full["ratio"] < 1.03


def test_chunk_shuffle_quality_between_sorted_and_full(built):
    ds = ShardDataset(built.path)
    q1 = shuffle_quality(chunk_shuffle_labels(ds, 0, 0, buffer_chunks=1, chunk_rows=CR), 32)["ratio"]
    q8 = shuffle_quality(chunk_shuffle_labels(ds, 0, 0, buffer_chunks=8, chunk_rows=CR), 32)["ratio"]
    assert shuffle_quality(ds.labels, 32)["ratio"] < q1 < q8 <= 1.05


@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_persistent_workers_see_each_epoch(built, context):
    # set_epoch on the main object must reach workers that persist across epochs.
    def epochs(persistent: bool, context: str) -> list[np.ndarray]:
        it = IterableShardDataset(built.path, batch_size=50, shuffle=True, seed=4, buffer_chunks=2,
                                  return_index=True, chunk_rows=CR)
        loader = DataLoader(it, batch_size=None, num_workers=2, multiprocessing_context=context,
                            persistent_workers=persistent)
        out = []
        for epoch in range(3):
            it.set_epoch(epoch)
            out.append(np.concatenate([b["index"] for b in loader]))
        return out

    # Reference: workers restarted each epoch (fork: cheap start-up).
    persistent, fresh = epochs(True, context), epochs(False, "fork")
    for p, f in zip(persistent, fresh):
        np.testing.assert_array_equal(p, f)
        np.testing.assert_array_equal(np.sort(p), np.arange(len(built)))
    assert not np.array_equal(persistent[0], persistent[1]) and not np.array_equal(persistent[1], persistent[2])


def test_iterable_pickles_with_its_epoch(built):
    import pickle

    it = IterableShardDataset(built.path, shuffle=True, chunk_rows=CR)
    it.set_epoch(7)
    again = pickle.loads(pickle.dumps(it))
    assert again.epoch == 7
    again.set_epoch(8)
    assert it.epoch == 7
