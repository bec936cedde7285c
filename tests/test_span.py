"""The span table: one gather across many mappings, and only registered ones are ever read."""

from __future__ import annotations

import numpy as np
import pytest

from loaders.span import SpanTable

L = 6


def _shards(counts: tuple[int, ...], seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"input_ids": rng.integers(0, 999, size=(n, L)).astype(np.int16),
             "lengths": rng.integers(0, L + 1, size=n).astype(np.int16),
             "labels": rng.integers(0, 50, size=n).astype(np.int32)} for n in counts]


def _expect(shards, shard, idx, starts):
    rows = idx - starts[shard]
    return {k: np.stack([shards[s][k][r] for s, r in zip(shard, rows)]) for k in ("input_ids", "lengths", "labels")}


@pytest.mark.parametrize("counts", [(5, 0, 7, 3), (1,), (100, 200)])
def test_gather_equals_per_shard_reads(counts):
    shards = _shards(counts)
    starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
    table = SpanTable(starts, L)
    for s, views in enumerate(shards):
        if counts[s]:
            table.register(s, views)
    idx = np.random.default_rng(1).integers(0, starts[-1], size=64)
    shard = np.searchsorted(starts, idx, side="right") - 1
    got = table.gather(table.snapshot(), shard, idx)
    want = _expect(shards, shard, idx, starts)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert got["labels"].dtype == np.int64


def test_unregistered_shard_is_never_read():
    shards = _shards((4, 4, 4))
    starts = np.array([0, 4, 8, 12])
    table = SpanTable(starts, L)
    tokens = [table.register(s, v) for s, v in enumerate(shards)]
    table.unregister(1, tokens[1])
    assert table.missing(np.array([0, 1, 2, 1])).tolist() == [1, 1]
    with pytest.raises(IndexError):
        table.gather(table.snapshot(), np.array([1]), np.array([5]))


def test_stale_token_does_not_unregister_a_newer_mapping():
    shards = _shards((4, 4))
    starts = np.array([0, 4, 8])
    table = SpanTable(starts, L)
    old = table.register(1, shards[1])
    table.register(0, shards[0])
    fresh = {k: v.copy() for k, v in shards[1].items()}  # mapped again, elsewhere
    table.register(1, fresh)
    table.unregister(1, old)  # a deferred close of the first mapping
    assert table.missing(np.array([0, 1])).size == 0
    got = table.gather(table.snapshot(), np.array([1]), np.array([6]))
    np.testing.assert_array_equal(got["input_ids"][0], fresh["input_ids"][2])


def test_register_refuses_non_contiguous_views():
    table = SpanTable(np.array([0, 4]), L)
    views = _shards((8,))[0]
    with pytest.raises(ValueError, match="contiguous"):
        table.register(0, {k: v[::2] for k, v in views.items()})


# -- the compiled single pass (locate + bounds check + gather; numba) ---------------------
needs_kernel = pytest.mark.skipif(not SpanTable(np.array([0, 1]), L).compiled, reason="numba not importable")


def _registered(counts: tuple[int, ...], seed: int = 0) -> tuple[SpanTable, list[dict[str, np.ndarray]], np.ndarray]:
    shards = _shards(counts, seed)
    starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
    table = SpanTable(starts, L)
    for s, views in enumerate(shards):
        if counts[s]:
            table.register(s, views)
    return table, shards, starts


@needs_kernel
@pytest.mark.parametrize("counts", [(5, 0, 7, 3), (1,), (100, 200), (0, 0, 9, 0, 4)])
def test_compiled_gather_equals_numpy_gather(counts):
    table, shards, starts = _registered(counts)
    n = int(starts[-1])
    rng = np.random.default_rng(2)
    idx = np.r_[rng.integers(0, n, size=64), 0, n - 1, -1, -n].astype(np.int64)
    assert table.gather_rows(table.current(), idx) is None  # no snapshot taken yet
    got = table.gather_rows(table.snapshot(), idx)
    pos = np.where(idx < 0, idx + n, idx)
    want = table.gather(table.snapshot(), np.searchsorted(starts, pos, side="right") - 1, pos)
    assert got is not None
    for k in want:
        assert got[k].dtype == want[k].dtype
        np.testing.assert_array_equal(got[k], want[k])


@needs_kernel
@pytest.mark.parametrize("bad", [15, -16, 2**40, -(2**62), np.iinfo(np.int64).max, np.iinfo(np.int64).min])
def test_compiled_gather_refuses_out_of_range(bad):
    table, _, _ = _registered((5, 0, 7, 3))
    assert table.gather_rows(table.snapshot(), np.array([0, bad], dtype=np.int64)) is None


@needs_kernel
def test_compiled_gather_never_reads_an_unregistered_shard():
    table, shards, starts = _registered((4, 4, 4))
    snap = table.snapshot()
    assert table.current() is snap
    table.unregister(1, int(table.addr[0, 1]))
    assert table.current() is None  # changed: a new snapshot is needed
    assert table.gather_rows(table.snapshot(), np.array([0, 5], dtype=np.int64)) is None
    got = table.gather_rows(table.snapshot(), np.array([0, 9], dtype=np.int64))
    np.testing.assert_array_equal(got["input_ids"][1], shards[2]["input_ids"][1])


def test_numpy_only_table_has_no_compiled_pass():
    table = SpanTable(np.array([0, 4]), L, compiled=False)
    table.register(0, _shards((4,))[0])
    assert not table.compiled
    assert table.gather_rows(table.snapshot(), np.array([1], dtype=np.int64)) is None
