"""ShardDataset refuses unusable data with a FormatError that names the file and what to do."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from _loader_helpers import build_dataset
from loaders import FormatError, ShardDataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("err") / "ds", shard_sizes=(300, 0, 200), seed=5)


@pytest.fixture
def copy(pristine, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(pristine.path, dst)
    return dst


def test_version_mismatch(tmp_path):
    built = build_dataset(tmp_path / "v2", shard_sizes=(20,), manifest_overrides={"format_version": 99})
    with pytest.raises(FormatError, match=r"format version 99.*Re-convert"):
        ShardDataset(built.path)


def test_not_a_dataset(tmp_path):
    with pytest.raises(FormatError, match="no manifest.json"):
        ShardDataset(tmp_path)


@pytest.mark.parametrize("expect, match", [
    ({"name": "dnabert-6mer"}, "tokenized with 'metagene-1'|tokenized with 'kmer4-fallback'"),
    ({"sha256": "f" * 64}, "is expected"),
])
def test_tokenizer_mismatch(pristine, expect, match):
    with pytest.raises(FormatError, match=match):
        ShardDataset(pristine.path, expect_tokenizer=expect)


def test_tokenizer_and_length_match(pristine):
    tok = pristine.tokenizer
    ds = ShardDataset(pristine.path, expect_tokenizer={"name": tok["name"], "sha256": tok["sha256"]},
                      expect_max_length=pristine.max_length)
    assert len(ds) == 500


def test_max_length_mismatch(pristine):
    with pytest.raises(FormatError, match="max_length 48, expected 512"):
        ShardDataset(pristine.path, expect_max_length=512)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_shard_names_file(copy, keep):
    shard = copy / "shard-00002.h5"
    size = os.path.getsize(shard)
    os.truncate(shard, int(size * keep))
    with pytest.raises(FormatError, match=r"shard-00002\.h5: truncated shard.*--resume"):
        ShardDataset(copy)


def test_modified_shard_caught_by_verify(copy):
    shard = copy / "shard-00000.h5"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF  # same size, different bytes
    shard.write_bytes(bytes(data))
    ShardDataset(copy)  # cheap open: sizes only
    with pytest.raises(FormatError, match=r"shard-00000\.h5: sha256 differs"):
        ShardDataset(copy, verify=True)


def test_missing_shard(copy):
    os.remove(copy / "shard-00001.h5")
    with pytest.raises(FormatError, match=r"shard-00001\.h5: shard listed in the manifest is missing"):
        ShardDataset(copy)


def test_inconsistent_totals(copy):
    path = copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["totals"]["num_rows"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="inconsistent"):
        ShardDataset(copy)


def test_unknown_layout(copy):
    path = copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["layout"] = "zarr"
    path.write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="unknown layout 'zarr'"):
        ShardDataset(copy)
