"""Cold batches under the random policy: every row's pages are issued to the disk at once.

The prefetch (``MADV_WILLNEED`` on each row's byte ranges, only where ``mincore`` says a
page is not resident) must run when the policy is ``random``, return correct rows, cover a
row that straddles a page boundary, and stop once the pages are resident. Timing is the
bench's job (``python -m loaders.bench --reads N``), not these tests'.
"""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

import numpy as np
import pytest

from _loader_helpers import build_dataset
from loaders import ShardDataset
from loaders.span import SpanTable

needs_prefetch = pytest.mark.skipif(
    not SpanTable(np.array([0, 1]), 1).can_prefetch, reason="no numba or no madvise/mincore on this platform"
)
L = 48  # 96-byte rows: row 42 covers bytes 4032..4127 of its array, across a 4 KiB page boundary


def _evict(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _file_table(tmp_path: Path, rows: int) -> tuple[SpanTable, dict[str, np.ndarray], mmap.mmap]:
    """One shard as a real file: input_ids at a page boundary, then lengths and labels."""
    rng = np.random.default_rng(0)
    data = {"input_ids": rng.integers(0, 999, size=(rows, L)).astype(np.int16),
            "lengths": rng.integers(1, L + 1, size=rows).astype(np.int16),
            "labels": rng.integers(0, 9, size=rows).astype(np.int32)}
    path = tmp_path / "shard.bin"
    blob = data["input_ids"].tobytes() + data["lengths"].tobytes() + data["labels"].tobytes()
    path.write_bytes(blob)
    _evict(path)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mm.madvise(mmap.MADV_RANDOM)  # no fault-time read-ahead: residency follows the prefetch only
    o1 = data["input_ids"].nbytes
    views = {"input_ids": np.frombuffer(mm, np.int16, rows * L, 0).reshape(rows, L),
             "lengths": np.frombuffer(mm, np.int16, rows, o1),
             "labels": np.frombuffer(mm, np.int32, rows, o1 + 2 * rows)}
    table = SpanTable(np.array([0, rows]), L)
    table.register(0, views)
    return table, data, mm


def _until_resident(table: SpanTable, idx: np.ndarray, seconds: float = 5.0) -> int:
    """Prefetch ``idx`` until no range is left to advise (the reads are asynchronous)."""
    deadline = time.monotonic() + seconds
    while (left := table.prefetch_rows(table.snapshot(), idx)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


@needs_prefetch
def test_prefetch_issues_cold_rows_then_stops(tmp_path):
    rows = 4000
    table, data, mm = _file_table(tmp_path, rows)
    idx = np.array([7, 1500, 3999, -1], dtype=np.int64)
    first = table.prefetch_rows(table.snapshot(), idx)
    if first == 0:
        pytest.skip("this filesystem kept the evicted pages resident")
    assert first > 0
    assert _until_resident(table, idx) == 0  # resident now: nothing more to issue
    got = table.gather_rows(table.snapshot(), idx)
    np.testing.assert_array_equal(got["input_ids"], data["input_ids"][idx])
    np.testing.assert_array_equal(got["labels"], data["labels"][idx])
    del got
    table.unregister(0, int(table.addr[0, 0]))
    mm.close()


@needs_prefetch
def test_prefetch_covers_a_row_across_a_page_boundary(tmp_path):
    assert mmap.PAGESIZE == 4096 or pytest.skip("the row geometry assumes 4 KiB pages")
    table, data, mm = _file_table(tmp_path, 4000)
    # Row 42's tokens end in the second page of input_ids; row 43 lies in that page alone.
    if table.prefetch_rows(table.snapshot(), np.array([100], dtype=np.int64)) == 0:  # a page of its own
        pytest.skip("this filesystem kept the evicted pages resident")
    assert _until_resident(table, np.array([42], dtype=np.int64)) == 0
    # Only row 42 was prefetched; its second page must have come in with it.
    assert _until_resident(table, np.array([43], dtype=np.int64), seconds=0.0) == 0
    table.unregister(0, int(table.addr[0, 0]))
    mm.close()


@needs_prefetch
def test_prefetch_skips_bad_and_unregistered_rows():
    table = SpanTable(np.array([0, 4, 8]), L)
    rng = np.random.default_rng(1)
    table.register(0, {"input_ids": rng.integers(0, 9, (4, L)).astype(np.int16),
                       "lengths": np.ones(4, np.int16), "labels": np.zeros(4, np.int32)})
    # shard 1 unregistered, indices out of range: nothing to advise, nothing raised
    assert table.prefetch_rows(table.snapshot(), np.array([5, 8, -9, 2**40], dtype=np.int64)) == 0
    assert table.prefetch_rows(None, np.array([0], dtype=np.int64)) == -1


@pytest.mark.parametrize("access, prefetch, expect", [
    ("random", None, True), ("sequential", None, False), ("random", False, False), ("sequential", True, True),
])
def test_prefetch_follows_the_policy_and_is_overridable(tmp_path_factory, access, prefetch, expect):
    built = build_dataset(tmp_path_factory.mktemp("pf") / "ds", shard_sizes=(50,), seed=4)
    ds = ShardDataset(built.path, access=access, prefetch=prefetch)
    assert ds.prefetch is expect


@needs_prefetch
def test_random_policy_prefetches_a_cold_batch_and_serves_correct_rows(tmp_path, monkeypatch):
    built = build_dataset(tmp_path / "ds", shard_sizes=(3000, 0, 2500, 1700), seed=5)
    ds = ShardDataset(built.path, access="random")
    assert ds.prefetch
    idx = np.random.default_rng(2).integers(0, len(ds), 256)
    ds.__getitems__(np.array([0, 3000, 5500]))  # map every shard
    ds.close()  # unmapped: the files' pages can be evicted
    for f in ds.shard_files:
        _evict(f)
    batch = ds.__getitems__(idx)
    a = built.arrays
    np.testing.assert_array_equal(batch["input_ids"], a["input_ids"][idx])
    np.testing.assert_array_equal(batch["lengths"], a["lengths"][idx])
    np.testing.assert_array_equal(batch["labels"], a["labels"][idx])
    stats = ds.io_stats
    assert stats["prefetch_checks"] >= 1
    if stats["prefetch_ranges"] == 0:
        pytest.skip("this filesystem kept the evicted pages resident")
    # warm now: the next batches skip the check (one timing per batch is all the warm path pays).
    # A gather slower than the cold bound re-arms the check; on a loaded machine a warm one can be,
    # so the bound is lifted here: what is checked is that a warm batch does not ask again.
    import loaders.gather

    monkeypatch.setattr(loaders.gather, "_COLD_NS_FIXED", 10**12)
    for _ in range(3):
        ds.__getitems__(idx)
    assert ds.io_stats["prefetch_checks"] <= stats["prefetch_checks"] + 1


def test_prefetch_survives_pickling(tmp_path):
    import pickle

    built = build_dataset(tmp_path / "ds", shard_sizes=(40, 30), seed=6)
    ds = pickle.loads(pickle.dumps(ShardDataset(built.path, access="random")))
    assert ds.prefetch and ds.io_stats == {"prefetch_checks": 0, "prefetch_ranges": 0}
    idx = np.arange(70)
    np.testing.assert_array_equal(ds.__getitems__(idx)["input_ids"], built.arrays["input_ids"][idx])
