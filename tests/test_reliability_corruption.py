"""Corruption: a flipped byte or a truncated shard is found, named, and never served.

``python -m convert verify`` (sha256 + per-read checks) and ``ShardDataset(verify=True)``
must both name the damaged file; a truncated shard is refused by the Dataset even without
verification (its size is checked at open), so no garbage tokens are ever returned.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import Ran, convert_cli, write_reads
from convert import ConvertOptions, convert
import shards as fmt
from shards.reader import ShardReader
from convert.verify import verify_dataset
from loaders import ShardDataset


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("corrupt")
    inp, mapping = write_reads(d / "in" / "r.fa", n_per_class=100, classes=4)
    convert(ConvertOptions(inputs=[str(inp)], out=str(d / "ds"), mapping=str(mapping), reads_per_shard=150,
                           progress=False))
    return d / "ds", inp


@pytest.fixture
def ds(built: tuple[Path, Path], tmp_path: Path) -> Path:
    out = tmp_path / "ds"
    shutil.copytree(built[0], out)
    return out


def _verify_cli(path: Path, *extra: str) -> Ran:
    return convert_cli("verify", path, *extra)


def _entry(ds: Path, k: int = 1) -> dict:
    return json.loads((ds / "manifest.json").read_text())["shards"][k]


def _flip(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x5A
    path.write_bytes(bytes(data))


def test_intact_dataset_verifies(ds: Path) -> None:
    res = _verify_cli(ds)
    assert res.returncode == 0 and "OK:" in res.stdout, res.stdout + res.stderr
    assert len(ShardDataset(ds, verify=True)) == 400


@pytest.mark.parametrize("region", ["input_ids", "labels", "class_rows", "superblock", "metadata", "last_byte"])
def test_flipped_byte_found_by_verify_and_dataset(ds: Path, region: str) -> None:
    e = _entry(ds)
    path = ds / e["file"]
    size = path.stat().st_size
    pos = {
        "input_ids": e["offsets"]["input_ids"] + 1000,
        "labels": e["offsets"]["labels"] + 4 * 7,
        "class_rows": e["offsets"]["class_rows"] + 4 * 3,
        "superblock": 20,
        "metadata": path.read_bytes().index(b"tokenizer") + 2,  # the tokenizer attribute's name
        "last_byte": size - 1,
    }[region]
    _flip(path, pos)
    res = _verify_cli(ds)
    assert res.returncode == 1, res.stdout
    assert "Traceback" not in res.stderr + res.stdout
    assert "FAILED" in res.stdout and e["file"] in res.stdout and "sha256" in res.stdout
    with pytest.raises(fmt.FormatError, match=e["file"]) as err:
        ShardDataset(ds, verify=True)
    assert "sha256" in str(err.value) and "re-convert" in str(err.value)


@pytest.mark.slow  # one verify per flipped byte
def test_every_flipped_byte_is_named_never_crashes(ds: Path) -> None:
    """Sweep byte positions over a whole shard: always a named failure, never another exception."""
    e = _entry(ds, 0)
    path = ds / e["file"]
    orig = path.read_bytes()
    positions = list(range(0, len(orig), max(1, len(orig) // 150))) + list(range(0, 2048, 61))
    for pos in positions:
        data = bytearray(orig)
        data[pos] ^= 0xFF
        path.write_bytes(bytes(data))
        r = verify_dataset(ds)
        assert not r["ok"] and any(e["file"] in p for p in r["problems"]), (pos, r)
        with pytest.raises(fmt.FormatError, match=e["file"]):
            ShardDataset(ds, verify=True)
    path.write_bytes(orig)
    assert verify_dataset(ds)["ok"]


@pytest.mark.parametrize("keep", ["zero", "header", "half", "all_but_one"])
def test_truncated_shard_is_refused(ds: Path, built: tuple[Path, Path], keep: str) -> None:
    e = _entry(ds)
    path = ds / e["file"]
    size = path.stat().st_size
    n = {"zero": 0, "header": 100, "half": size // 2, "all_but_one": size - 1}[keep]
    with open(path, "r+b") as f:
        f.truncate(n)
    res = _verify_cli(ds, "--source", str(built[1]), "--sample", "1.0")
    assert res.returncode == 1 and "Traceback" not in res.stderr + res.stdout, res.stdout + res.stderr
    assert e["file"] in res.stdout and "truncated" in res.stdout
    # The Dataset refuses it at open, with or without verification: no token is ever served.
    for verify in (False, True):
        with pytest.raises(fmt.FormatError, match=e["file"]) as err:
            ShardDataset(ds, verify=verify)
        assert "truncated" in str(err.value) or "bytes" in str(err.value)
    # The format's reader (what every other reader goes through) refuses it at open too.
    with pytest.raises(fmt.FormatError, match="truncated"):
        ShardReader(ds)
    if n <= 100:
        with pytest.raises(fmt.FormatError, match=e["file"]):
            fmt.read_shard_attrs(path)


def test_missing_shard(ds: Path) -> None:
    e = _entry(ds, 2)
    (ds / e["file"]).unlink()
    res = _verify_cli(ds)
    assert res.returncode == 1 and e["file"] in res.stdout and "missing" in res.stdout
    with pytest.raises(fmt.FormatError, match="missing"):
        ShardDataset(ds)
