"""A crafted or corrupt manifest is refused at open with a FormatError naming the problem.

Shard names must be plain file names inside the dataset directory; counts and offsets are
checked against each other and the recorded shard sizes before anything is mapped. Every
case also goes through ``python -m convert verify`` (a clear FAILED, never a traceback).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from _loader_helpers import build_dataset
from conftest import convert_cli
import shards as fmt
from convert.verify import verify_dataset
from loaders import FormatError, ShardDataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory):
    return build_dataset(tmp_path_factory.mktemp("manifest") / "ds", shard_sizes=(300, 0, 200), seed=3)


@pytest.fixture
def ds(pristine, tmp_path: Path) -> Path:
    shutil.copytree(pristine.path, tmp_path / "ds")
    return tmp_path / "ds"


def _edit(ds: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    path = ds / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))


def _set(path: tuple, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def _shift(shard: int, name: str, by: int) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        m["shards"][shard]["offsets"][name] += by
    return change


def _point_inside_ids(m: dict[str, Any]) -> None:
    offs = m["shards"][0]["offsets"]
    offs["labels"] = offs["input_ids"] + 64


CASES = [
    # (id, change, expected message)
    ("traversal", _set(("shards", 0, "file"), "../../outside.h5"), r"not a plain file name"),
    ("absolute", _set(("shards", 0, "file"), "/etc/hostname"), r"not a plain file name"),
    ("subdirectory", _set(("shards", 0, "file"), "sub/shard-00000.h5"), r"not a plain file name"),
    ("hidden", _set(("shards", 0, "file"), ".shard-00000.h5"), r"not a plain file name"),
    ("dotdot", _set(("shards", 0, "file"), ".."), r"not a plain file name"),
    ("not a string", _set(("shards", 0, "file"), 7), r"not a plain file name"),
    ("listed twice", _set(("shards", 2, "file"), "shard-00000.h5"), r"listed twice"),
    ("overlap", _shift(0, "lengths", -2), r"overlap"),
    ("inside input_ids", _point_inside_ids, r"overlap"),
    ("shifted by one byte", _shift(0, "labels", 1), r"not aligned|overlap"),
    ("past the end", _set(("shards", 0, "offsets", "class_offsets"), 10**9), r"0\.\.\d+|runs past"),
    ("negative offset", _set(("shards", 0, "offsets", "labels"), -4), r"offset of labels is -4"),
    ("float offset", _set(("shards", 0, "offsets", "labels"), 2048.0), r"offset of labels is 2048\.0"),
    ("absurd num_rows", _set(("shards", 0, "num_rows"), 2**62), r"num_rows is 4611686018427387904"),
    ("negative num_rows", _set(("shards", 0, "num_rows"), -1), r"num_rows is -1"),
    ("string num_rows", _set(("shards", 0, "num_rows"), "300"), r"num_rows is '300'"),
    ("bool num_rows", _set(("shards", 0, "num_rows"), True), r"num_rows is True"),
    ("more rows than bytes", _set(("shards", 0, "num_rows"), 100_000), r"runs past|inconsistent"),
    ("max_length zero", _set(("max_length",), 0), r"max_length is 0"),
    ("max_length huge", _set(("max_length",), 1 << 40), r"max_length is"),
    # int16 lengths hold at most 32,767: one past it is refused, not wrapped negative.
    ("max_length past int16", _set(("max_length",), 32768), r"max_length is 32768, expected an integer in 1\.\.32767"),
    ("num_classes string", _set(("num_classes",), "5"), r"num_classes is '5'"),
    ("shards not a list", _set(("shards",), {"file": "x"}), r"shards is not a list"),
    ("entry not an object", _set(("shards", 1), "shard-00001.h5"), r"entry is not an object"),
    ("offsets not an object", _set(("shards", 0, "offsets"), [1, 2]), r"offsets is not an object"),
    ("unknown dataset", _set(("shards", 0, "offsets", "evil"), 0), r"unknown datasets in offsets: evil"),
    ("missing bytes", lambda m: m["shards"][0].pop("bytes"), r"bytes is None"),
    ("missing offsets entry", lambda m: m["shards"][0]["offsets"].pop("labels"), r"no entry for labels"),
    ("no tokenizer", lambda m: m.pop("tokenizer"), r"tokenizer is not an object"),
    ("pad id out of vocab", _set(("tokenizer", "pad_id"), 10**6), r"pad_id is 1000000"),
    ("label names short", lambda m: m["label_names"].pop(), r"label_names must be a list"),
    ("bad dataset id", _set(("dataset_id",), "../x"), r"dataset_id '\.\./x'"),
    ("bad sha256", _set(("shards", 0, "sha256"), 5), r"sha256 5"),
    ("totals", _set(("totals", "num_rows"), 7), r"inconsistent"),
    ("unknown layout", _set(("layout",), "zarr"), r"unknown layout 'zarr'"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_manifest_is_a_format_error(ds: Path, change, message) -> None:
    _edit(ds, change)
    for opener in (ShardDataset, lambda p: ShardDataset(p, verify=True), fmt.read_manifest):
        with pytest.raises(FormatError, match=message) as err:
            opener(ds)
        assert "manifest.json" in str(err.value)
    result = verify_dataset(ds)
    assert not result["ok"] and any(pytest.importorskip("re").search(message, p) for p in result["problems"])


def test_outside_file_is_never_served_even_with_verify(ds: Path, tmp_path: Path) -> None:
    # The attacker controls the manifest, so the outside file's sha256 "matches".
    outside = tmp_path / "secret.h5"
    shutil.copy(ds / "shard-00000.h5", outside)
    rel = os.path.relpath(outside, ds)
    _edit(ds, _set(("shards", 0, "file"), rel))
    with pytest.raises(FormatError, match=r"not a plain file name"):
        ShardDataset(ds, verify=True)
    _edit(ds, _set(("shards", 0, "file"), str(outside)))
    with pytest.raises(FormatError, match=r"not a plain file name"):
        ShardDataset(ds, verify=True)


def test_symlinked_shard_is_refused(ds: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.h5"
    os.replace(ds / "shard-00000.h5", outside)
    os.symlink(outside, ds / "shard-00000.h5")
    with pytest.raises(FormatError, match=r"regular file.*symlink"):
        ShardDataset(ds)


def test_verify_cli_absurd_counts_fails_fast_without_traceback(ds: Path) -> None:
    _edit(ds, _set(("shards", 0, "num_rows"), 2**62))
    t0 = time.monotonic()
    res = convert_cli("verify", ds)
    assert time.monotonic() - t0 < 60
    assert res.returncode != 0 and "Traceback" not in res.stderr + res.stdout
    assert "num_rows" in res.stdout + res.stderr


@pytest.mark.parametrize("index", [0, 7, 99_999, 100_000, 1_234_567])
def test_shard_index_round_trips_past_five_digits(index: int) -> None:
    assert fmt.shard_index_from_name(fmt.shard_name(index)) == index


@pytest.mark.parametrize("name", ["shard-1.h5", "shard-00001.h5.tmp", "../shard-00001.h5", "shard-0000x.h5", ""])
def test_shard_index_refuses_other_names(name: str) -> None:
    with pytest.raises(FormatError):
        fmt.shard_index_from_name(name)


@pytest.mark.slow  # 100,000 shard links
def test_more_than_99999_shards(tmp_path: Path) -> None:
    # 100,000 empty shards (hard links of one real empty shard) and a real last one: the
    # index of row k comes from the manifest's order, and the 100,001st shard is read.
    built = build_dataset(tmp_path / "src", shard_sizes=(0, 37), seed=1)
    m = json.loads((built.path / "manifest.json").read_text())
    empty, last = m["shards"]
    big = tmp_path / "big"
    big.mkdir()
    count = 100_000
    entries = []
    for s in range(count):
        name = fmt.shard_name(s)
        if s % 50_000 == 0:  # file systems cap hard links per inode (ext4: 65,000)
            source = tmp_path / f"empty-{s}.h5"
            shutil.copy(built.path / empty["file"], source)
        os.link(source, big / name)
        entries.append({**copy.deepcopy(empty), "file": name})
    name = fmt.shard_name(count)
    shutil.copy(built.path / last["file"], big / name)
    entries.append({**last, "file": name})
    m["shards"] = entries
    m["totals"]["num_shards"] = len(entries)
    (big / "manifest.json").write_text(json.dumps(m))
    ds = ShardDataset(big)
    assert len(ds) == 37 and ds.num_shards == count + 1
    assert name == "shard-100000.h5" and fmt.shard_index_from_name(name) == count
    batch = ds.__getitems__([0, 36])
    assert batch["input_ids"].tolist() == built.arrays["input_ids"][[0, 36]].tolist()
    assert ds[5]["labels"] == int(built.arrays["labels"][5])
