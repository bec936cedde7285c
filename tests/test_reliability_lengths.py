"""Token lengths fit the int16 store: L is at most 32,767 (explicit and auto), never negative."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from _safety_helpers import assert_refused, snapshot
from conftest import DATA, convert_cli

MAPPING = DATA / "mapping.tsv"


def _long_read(path: Path, bases: int) -> Path:
    rng = np.random.default_rng(0)
    seq = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, bases)].tobytes()
    path.write_bytes(b">lbl|7|11|%d|long/1\n" % bases + seq + b"\n>lbl|42||8|short/1\nACGTACGT\n")
    return path


def _lengths(out: Path) -> np.ndarray:
    return np.concatenate([h5py.File(p, "r")["lengths"][:] for p in sorted(out.glob("shard-*.h5"))])


@pytest.mark.parametrize("value", ["32768", "40000", "0", "-5"])
def test_max_length_over_int16_is_refused(tmp_path: Path, value: str) -> None:
    inp = _long_read(tmp_path / "r.fa", 40_000)
    before = snapshot(tmp_path)
    res = convert_cli(inp, "--mapping", MAPPING, "--out", tmp_path / "out", "--tokenizer", "char",
                      "--max-length", value, "--no-progress")
    assert_refused(res, "--max-length", "32767")
    assert snapshot(tmp_path) == before


def test_max_length_32767_stores_the_longest_read(tmp_path: Path) -> None:
    inp = _long_read(tmp_path / "r.fa", 40_000)
    out = tmp_path / "out"
    res = convert_cli(inp, "--mapping", MAPPING, "--out", out, "--tokenizer", "char", "--max-length", "32767",
                      "--no-progress")
    assert res.returncode == 0, res.stderr
    lengths = _lengths(out)
    assert lengths.min() > 0 and lengths.max() == 32767
    assert json.loads((out / "report.json").read_text())["truncated"] == 1


@pytest.mark.parametrize("tokenizer, bases", [("char", 100_000), ("metagene-1", 400_000)])  # ~100k tokens
def test_auto_max_length_is_capped(tmp_path: Path, tokenizer: str, bases: int) -> None:
    inp = _long_read(tmp_path / "r.fa", bases)
    out = tmp_path / "out"
    res = convert_cli(inp, "--mapping", MAPPING, "--out", out, "--tokenizer", tokenizer, "--no-progress")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["max_length"] <= 32767
    lengths = _lengths(out)
    assert lengths.min() > 0 and lengths.max() == manifest["max_length"]
    assert json.loads((out / "report.json").read_text())["truncated"] == 1
