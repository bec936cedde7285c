"""``verify`` compares the manifest with the HDF5 files themselves, not only with itself.

Each edit below passes the loader's cheap open-time checks (offsets in range, aligned,
non-overlapping) yet describes the file wrongly; the loader would serve the wrong bytes.
Even with the sha256 recomputed (an attacker controls the manifest), verify names it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from _loader_helpers import build_dataset
from conftest import convert_cli
import shards as fmt
from convert.verify import verify_dataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory):
    return build_dataset(tmp_path_factory.mktemp("vl") / "ds", shard_sizes=(300, 300), seed=4)


@pytest.fixture(scope="module")
def pristine_compressed(tmp_path_factory: pytest.TempPathFactory):
    return build_dataset(tmp_path_factory.mktemp("vlc") / "ds", shard_sizes=(300, 200), seed=4, layout="compressed")


def _swap(a: str, b: str) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        offs = m["shards"][0]["offsets"]
        offs[a], offs[b] = offs[b], offs[a]
    return change


def _swap_files(m: dict[str, Any]) -> None:
    s = m["shards"]  # two shards of the same size: the entries differ only by file and hash
    for key in ("file", "sha256", "bytes"):
        s[0][key], s[1][key] = s[1][key], s[0][key]


def _as_compressed(m: dict[str, Any]) -> None:
    m["layout"], m["compression"] = "compressed", "gzip"
    for e in m["shards"]:
        e["offsets"]["input_ids"] = None


CASES = [
    ("labels read as class_ids", "mmap", _swap("labels", "class_ids"), r"dataset labels starts at byte"),
    ("lengths read as mates", "mmap", _swap("read_lengths", "tax_ids"), r"dataset read_lengths starts at byte"),
    ("shards listed out of order", "mmap", _swap_files, r"shard_index attribute 1, but it is shard 0"),
    ("mmap claimed compressed", "mmap", _as_compressed, r"layout attribute 'mmap'.*'compressed'|chunks"),
    ("other codec", "compressed", lambda m: m.update(compression="lzf"), r"stored with chunks .* and gzip.*lzf"),
    ("smaller max_length", "mmap", lambda m: m.update(max_length=m["max_length"] - 8), r"input_ids is int16 \(300, 48\)"),
]


@pytest.mark.parametrize("layout, change, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verify_compares_with_the_file(pristine, pristine_compressed, tmp_path: Path, layout, change, message) -> None:
    src = pristine if layout == "mmap" else pristine_compressed
    ds = tmp_path / "ds"
    shutil.copytree(src.path, ds)
    path = ds / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))
    fmt.read_manifest(ds)  # passes the cheap checks: only the file can tell
    res = verify_dataset(ds)
    assert not res["ok"]
    assert any(pytest.importorskip("re").search(message, p) for p in res["problems"]), res["problems"]


def test_pristine_datasets_verify(pristine, pristine_compressed) -> None:
    for built in (pristine, pristine_compressed):
        res = verify_dataset(built.path)
        assert res["ok"], res["problems"]


def test_verify_cli_names_the_problem(pristine, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    shutil.copytree(pristine.path, ds)
    path = ds / "manifest.json"
    m = json.loads(path.read_text())
    _swap("labels", "class_ids")(m)
    path.write_text(json.dumps(m))
    res = convert_cli("verify", ds)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "dataset labels starts at byte" in res.stdout + res.stderr
