"""A dataset rebuilt or replaced under an open reader is detected, never served as a mix.

Each dataset carries an identity (``dataset_id`` in the manifest and in every shard), and
a reader records each shard file's (inode, device, size, mtime) when it opens the dataset;
mapping a shard checks both and raises DatasetChangedError ("reopen it").
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from _loader_helpers import build_dataset
from conftest import write_reads
from convert import ConvertOptions, convert
import shards as fmt
from convert.verify import verify_dataset
from loaders import ShardDataset
from loaders.collate import trim_batch

SIZES = (200, 150, 180)


def _swap_in(new: Path, path: Path, trash: Path) -> None:
    """Replace ``path`` by ``new`` the way ``--overwrite`` publishes (two renames)."""
    os.replace(path, trash)
    os.replace(new, path)


def test_rebuilt_under_an_open_reader(tmp_path: Path) -> None:
    old = build_dataset(tmp_path / "ds", SIZES, seed=1)
    ds = ShardDataset(old.path)
    assert ds[0]["labels"] == int(old.arrays["labels"][0])  # shard 0 mapped
    build_dataset(tmp_path / "new", SIZES, seed=2, max_length=40)
    _swap_in(tmp_path / "new", old.path, tmp_path / "trash")
    # Shard 0 stays mapped: its (old, consistent) rows are still served.
    assert ds[1]["labels"] == int(old.arrays["labels"][1])
    for read in (lambda: ds[250], lambda: ds.__getitems__([0, 400]), lambda: ds.labels):
        with pytest.raises(fmt.DatasetChangedError, match=r"changed since it was opened.*reopen"):
            read()


def test_replaced_in_place_same_size(tmp_path: Path) -> None:
    built = build_dataset(tmp_path / "ds", SIZES, seed=1)
    ds = ShardDataset(built.path)
    other = build_dataset(tmp_path / "other", SIZES, seed=1)  # same sizes, another identity
    shutil.copy(other.path / "shard-00002.h5", built.path / "shard-00002.h5")
    with pytest.raises(fmt.DatasetChangedError, match="changed since it was opened"):
        ds.__getitems__([360])


def test_shard_of_another_dataset_is_refused_by_identity(tmp_path: Path) -> None:
    # A fresh reader (stat recorded after the swap) still sees the foreign shard.
    built = build_dataset(tmp_path / "ds", SIZES, seed=1)
    other = build_dataset(tmp_path / "other", SIZES, seed=1)
    shutil.copy(other.path / "shard-00001.h5", built.path / "shard-00001.h5")
    ds = ShardDataset(built.path)
    assert ds[0]["labels"] == int(built.arrays["labels"][0])
    with pytest.raises(fmt.DatasetChangedError, match="belongs to another dataset"):
        ds[210]
    res = verify_dataset(built.path)
    assert not res["ok"] and any("dataset_id" in p and "shard-00001.h5" in p for p in res["problems"])


def test_dataloader_worker_reports_replacement(tmp_path: Path) -> None:
    built = build_dataset(tmp_path / "ds", SIZES, seed=1)
    ds = ShardDataset(built.path)
    build_dataset(tmp_path / "new", SIZES, seed=3)
    _swap_in(tmp_path / "new", built.path, tmp_path / "trash")
    loader = DataLoader(ds, batch_size=32, num_workers=1, collate_fn=trim_batch)
    with pytest.raises(fmt.DatasetChangedError, match="reopen"):
        next(iter(loader))


@pytest.mark.slow  # real conversions
def test_converter_writes_one_identity(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "r.fa", n_per_class=40, classes=3)
    opts = dict(inputs=[str(inp)], mapping=str(mapping), reads_per_shard=50, progress=False)
    convert(ConvertOptions(out=str(tmp_path / "a"), **opts))
    m = fmt.read_manifest(tmp_path / "a")
    assert len(m["dataset_id"]) == 32
    for e in m["shards"]:
        assert fmt.read_shard_attrs(tmp_path / "a" / e["file"])["dataset_id"] == m["dataset_id"]
        for name, off in e["offsets"].items():  # written aligned
            assert off is None or off % fmt.DATASET_DTYPES[name].itemsize == 0
    # Re-running on unchanged inputs writes the same bytes (same identity) ...
    convert(ConvertOptions(out=str(tmp_path / "b"), **opts))
    assert json.loads((tmp_path / "b" / "manifest.json").read_text()) == m
    # ... a rebuild from a changed input gets another identity, which an open reader detects.
    ds = ShardDataset(tmp_path / "a")
    ds[0]
    with open(inp, "a") as f:
        f.write(">lbl|10||100|extra/1\n" + "ACGT" * 25 + "\n")
    convert(ConvertOptions(out=str(tmp_path / "a"), overwrite=True, **opts))
    assert fmt.read_manifest(tmp_path / "a")["dataset_id"] != m["dataset_id"]
    with pytest.raises(fmt.DatasetChangedError):
        ds.__getitems__(np.arange(len(ds)))
