"""The span table: one gather across many mappings, and only registered ones are ever read."""

from __future__ import annotations

import numpy as np
import pytest

from loaders._span import SpanTable

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
