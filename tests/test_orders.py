"""loaders.orders: every order is a pure function of (sizes, seed, epoch, placement), no I/O."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from loaders.orders import (
    balanced_draws,
    chunk_shuffle_groups,
    chunk_units,
    group_indices,
    permutation_block,
    rank_count,
    rank_indices,
    sequential_groups,
)

ORDERS = pathlib.Path(__file__).resolve().parent.parent / "loaders" / "orders"
COUNTS = np.array([1000, 0, 37, 4096, 513], dtype=np.int64)  # an empty shard and ragged tails
STARTS = np.r_[0, np.cumsum(COUNTS)].astype(np.int64)
N = int(COUNTS.sum())


@pytest.mark.parametrize("n", [1, 2, 5, 1000, 70_001])
def test_shuffle_is_a_permutation_fixed_by_seed_and_epoch(n: int) -> None:
    order = permutation_block(n, 7, 3, 0, n)
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.array_equal(order, permutation_block(n, 7, 3, 0, n))  # same (n, seed, epoch), same order
    if n >= 1000:
        assert not np.array_equal(order, permutation_block(n, 7, 4, 0, n))  # another epoch
        assert not np.array_equal(order, permutation_block(n, 8, 3, 0, n))  # another seed
    mid = n // 3
    np.testing.assert_array_equal(np.r_[permutation_block(n, 7, 3, 0, mid), permutation_block(n, 7, 3, mid, n)], order)


@pytest.mark.parametrize("world", [1, 3, 8])
def test_ranks_split_the_shuffle_exactly(world: int) -> None:
    n = 1001
    count = rank_count(n, world, 0, drop_last=True)
    parts = [rank_indices(n, 5, 0, r, world, 0, count) for r in range(world)]
    served = np.concatenate(parts)
    assert served.size == count * world and np.unique(served).size == served.size  # each once, none twice
    interleaved = np.stack(parts, axis=1).reshape(-1)
    np.testing.assert_array_equal(interleaved, permutation_block(n, 5, 0, 0, count * world))


@pytest.mark.parametrize("buffer_chunks", [1, 3, 16])
@pytest.mark.parametrize("consumers", [1, 2, 5])
def test_chunk_shuffle_covers_every_index_once(buffer_chunks: int, consumers: int) -> None:
    def epoch(seed: int, ep: int) -> np.ndarray:
        parts = [
            group_indices(STARTS, g)
            for c in range(consumers)
            for g in chunk_shuffle_groups(COUNTS, seed, ep, buffer_chunks, c, consumers, chunk_rows=256)
        ]
        return np.concatenate(parts)

    order = epoch(11, 2)
    assert np.array_equal(np.sort(order), np.arange(N))
    assert np.array_equal(order, epoch(11, 2))
    assert not np.array_equal(order, epoch(11, 3)) and not np.array_equal(order, epoch(12, 2))


def test_sequential_groups_are_stored_order() -> None:
    parts = [group_indices(STARTS, g) for c in range(3) for g in sequential_groups(COUNTS, c, 3, chunk_rows=256)]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(N))
    single = np.concatenate([group_indices(STARTS, g) for g in sequential_groups(COUNTS, chunk_rows=256)])
    np.testing.assert_array_equal(single, np.arange(N))
    shard, row0, rows = chunk_units(COUNTS, 256)
    assert rows.sum() == N and (rows <= 256).all() and (rows > 0).all()
    assert np.array_equal(np.bincount(shard, weights=rows, minlength=COUNTS.size).astype(np.int64), COUNTS)


def test_balanced_draws_are_pure_and_in_range() -> None:
    counts = np.array([5, 0, 300, 1], dtype=np.int64)
    cdf = np.cumsum(np.array([0.25, 0.0, 0.5, 0.25]))
    pos = np.arange(70_000, dtype=np.int64)  # crosses a 65,536-position stream boundary
    cls, within = balanced_draws(counts, cdf, 3, 1, pos)
    assert (counts[cls] > 0).all() and (within >= 0).all() and (within < counts[cls]).all()
    again = balanced_draws(counts, cdf, 3, 1, pos[::-1])  # a position's draw does not depend on its neighbours
    np.testing.assert_array_equal(again[0][::-1], cls)
    np.testing.assert_array_equal(again[1][::-1], within)
    assert not np.array_equal(balanced_draws(counts, cdf, 3, 2, pos)[0], cls)


def test_orders_do_no_io() -> None:
    """The orders import numpy, the chunk constant and each other only: nothing that opens files."""
    allowed = {"__future__", "typing", "numpy", "shards", "loaders.orders"}
    for path in ORDERS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert any(name == a or name.startswith(a + ".") for a in allowed), f"{path.name} imports {name}"
        assert "open(" not in path.read_text(), path.name
