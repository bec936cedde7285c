"""The format package at the bottom (issue 20, rules 1 and 2): one intactness rule, one reader per layout."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import shards
from _loader_helpers import build_dataset
from convert.repair import damaged_shards
from convert.staging import complete
from convert.verify import verify_dataset
from shards.reader import COLUMN_READERS, ShardReader


def test_import_loaders_and_shards_stay_below_the_converter(fresh_modules: dict[str, frozenset[str]]) -> None:
    """A fresh process: ``import loaders`` loads no converter, training or HDF5 module; ``shards`` none either."""
    loaded = fresh_modules["loaders"]  # after import shards, then loaders
    assert {"shards", "loaders"} <= loaded
    assert sorted(m for m in loaded if m.split(".")[0] in ("convert", "train", "h5py")) == []


def test_check_shard_names_each_problem(tmp_path: Path) -> None:
    """Intact, missing, symlink, special file, size, sha256: one answer each, never through a link."""
    data = b"readshard" * 100
    real = tmp_path / "shard-00000.h5"
    real.write_bytes(data)
    entry = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert shards.check_shard(real, entry, hash=True).intact
    assert shards.check_shard(real, entry, hash=True).identity[2] == len(data)
    assert shards.check_shard(tmp_path / "gone.h5", entry).problem == "missing"
    (tmp_path / "link.h5").symlink_to(real)
    assert shards.check_shard(tmp_path / "link.h5", entry, hash=True).problem == "symlink"
    os.mkfifo(tmp_path / "fifo.h5")
    assert shards.check_shard(tmp_path / "fifo.h5", entry).problem == "special"
    assert shards.check_shard(real, {**entry, "bytes": 1}).problem == "size"
    flipped = {**entry, "sha256": "0" * 64}
    assert shards.check_shard(real, flipped).intact  # no hashing unless asked
    state = shards.check_shard(real, flipped, hash=True)
    assert (state.problem, state.digest) == ("sha256", entry["sha256"])


def test_every_caller_refuses_a_linked_shard(tmp_path: Path) -> None:
    """A shard replaced by a link to identical bytes: the reader, verify, --resume and publish all refuse it."""
    ds = tmp_path / "ds"
    build_dataset(ds, (300, 200))
    manifest = shards.read_manifest(ds)
    assert damaged_shards(ds, manifest) == [] and verify_dataset(ds)["ok"]
    (ds / "report.json").write_text("{}\n")  # what staging.complete also asks for (verify would read it)
    assert complete(ds)[0]
    target = tmp_path / "elsewhere.h5"
    os.replace(ds / "shard-00001.h5", target)
    (ds / "shard-00001.h5").symlink_to(target)
    with pytest.raises(shards.FormatError, match="symlink"):
        ShardReader(ds)
    assert damaged_shards(ds, manifest) == [1]
    assert not complete(ds)[0]
    (ds / "report.json").unlink()
    result = verify_dataset(ds)
    assert not result["ok"] and any("shard-00001.h5: a symlink file" in p for p in result["problems"])


@pytest.mark.parametrize("layout", ["mmap", "compressed"])
def test_column_readers_read_what_was_written(tmp_path: Path, layout: str) -> None:
    """One column reader per layout; whole columns and row blocks equal the written rows."""
    assert set(COLUMN_READERS) == set(shards.LAYOUTS)
    built = build_dataset(tmp_path / layout, (700, 0, 513), layout=layout)
    reader = ShardReader(tmp_path / layout)
    ids = np.concatenate([np.concatenate([b for _, b in reader.iter_blocks(s, "input_ids", 256)] or
                                         [np.zeros((0, reader.max_length), np.int16)])
                          for s in range(reader.num_shards)])
    labels = np.concatenate([np.asarray(reader.read_columns(s, ("labels",)).get("labels", np.zeros(0, np.int32)))
                             for s in range(reader.num_shards)])
    np.testing.assert_array_equal(ids, built.arrays["input_ids"])
    np.testing.assert_array_equal(labels, built.arrays["labels"])
