"""`--split` (by fragment hash, mates together, --jobs-invariant) and `python -m convert leakage A B`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import convert_cli, write_reads
import shards as fmt
from convert.leakage import find_leakage, row_hashes
from convert.provenance import assign_split
from convert.split import parse_split
from convert.pipeline import ConvertError
from loaders import ShardDataset


def _shard_hashes(out: Path) -> list[str]:
    return [e["sha256"] for e in fmt.read_manifest(out)["shards"]]


@pytest.fixture
def reads(tmp_path: Path) -> tuple[Path, Path]:
    return write_reads(tmp_path / "in" / "r.fa", n_per_class=150, seed=4)


def test_split_mates_together_and_identical_for_any_jobs(reads, tmp_path: Path) -> None:
    inp, mapping = reads
    made = {}
    for jobs in (1, 3):
        out = tmp_path / f"split{jobs}"
        r = convert_cli(inp, "--mapping", mapping, "--out", out, "--split", "val=0.2,test=0.1", "--seed", "7",
                        "--jobs", str(jobs), "--reads-per-shard", "90", "--no-progress")
        assert r.returncode == 0, r.stderr
        made[jobs] = {side: _shard_hashes(out / side) for side in ("train", "val", "test")}
    assert made[1] == made[3]
    out = tmp_path / "split1"
    sides = {side: ShardDataset(out / side) for side in ("train", "val", "test")}
    # Every input record is on exactly one side; mates share their side.
    records = np.concatenate([ds.record_numbers for ds in sides.values()])
    assert sorted(records.tolist()) == list(range(600))
    frags = {side: set(ds.fragment_hashes.tolist()) for side, ds in sides.items()}
    assert not (frags["train"] & frags["val"]) and not (frags["train"] & frags["test"]) and not (frags["val"] & frags["test"])
    for ds in sides.values():
        _, counts = np.unique(ds.fragment_hashes, return_counts=True)
        assert (counts == 2).all()  # both mates of every fragment on this side
    n = {side: len(ds) for side, ds in sides.items()}
    assert 0.1 < n["val"] / 600 < 0.3 and 0.03 < n["test"] / 600 < 0.2
    for side in sides:
        report = json.loads((out / side / fmt.REPORT_NAME).read_text())
        assert report["records_in"] == report["written"] + report["skipped"] + report["other_split"] == 600
        assert fmt.read_manifest(out / side)["source"]["split"] == {"side": side, "fractions": {"test": 0.1, "val": 0.2},
                                                                      "seed": 7}
    v = convert_cli("verify", out / "val", "--source", inp, "--sample", "1", "--no-progress")
    assert v.returncode == 0, v.stdout
    # Another seed gives another split.
    other = tmp_path / "seed8"
    assert convert_cli(inp, "--mapping", mapping, "--out", other, "--split", "val=0.2", "--seed", "8",
                       "--reads-per-shard", "90", "--no-progress").returncode == 0
    assert set(ShardDataset(other / "val").fragment_hashes.tolist()) != frags["val"]
    assert not (other / "test").exists()


def test_assign_split_fractions() -> None:
    h = np.random.default_rng(0).integers(0, 2**63, size=200_000).astype(np.uint64) * np.uint64(2)
    side = assign_split(h, {"val": 0.1, "test": 0.05}, seed=1)
    frac = np.bincount(side, minlength=3) / h.size
    assert abs(frac[1] - 0.1) < 0.005 and abs(frac[2] - 0.05) < 0.005
    assert np.array_equal(side, assign_split(h, {"val": 0.1, "test": 0.05}, seed=1))


@pytest.mark.parametrize("text", ["", "val", "val=0", "val=1", "train=0.1", "val=0.6,test=0.5", "test=0.1", "val=x",
                                  "val=0.1,val=0.2"])
def test_bad_split_specs(text: str) -> None:
    with pytest.raises(ConvertError, match="--split"):
        parse_split(text)


def test_bad_split_on_the_command_line_exits_2(reads, tmp_path: Path) -> None:
    inp, mapping = reads
    r = convert_cli(inp, "--mapping", mapping, "--out", tmp_path / "o", "--split", "val=1.5", "--no-progress")
    assert r.returncode == 2 and "--split" in r.stderr and "Traceback" not in r.stderr


def test_leakage_none_after_split_and_found_when_planted(reads, tmp_path: Path) -> None:
    inp, mapping = reads
    out = tmp_path / "s"
    assert convert_cli(inp, "--mapping", mapping, "--out", out, "--split", "val=0.25", "--reads-per-shard", "100",
                       "--no-progress").returncode == 0
    r = convert_cli("leakage", out / "train", out / "val", "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fragments (mate pairs) in both: 0" in r.stdout and "identical sequences in both: 0" in r.stdout
    assert r.stdout.rstrip().endswith("OK: no fragment, read on either strand or identical sequence is in both")
    # Plant in a new dataset: two whole training fragments (4 records, verbatim) and one read
    # under a fresh fragment name carrying a third training read's sequence.
    train = ShardDataset(out / "train")
    lines = inp.read_text().splitlines()
    recs = [(lines[2 * i], lines[2 * i + 1]) for i in range(len(lines) // 2)]
    frags = list(dict.fromkeys(train.fragment_hashes.tolist()))[:3]
    rows = [np.flatnonzero(train.fragment_hashes == np.uint64(f)) for f in frags]
    planted = [recs[int(train.record_numbers[r])] for r in np.concatenate(rows[:2])]
    seq = recs[int(train.record_numbers[rows[2][0]])][1]
    extra = tmp_path / "in2" / "planted.fa"
    extra.parent.mkdir()
    extra.write_text("".join(f"{h}\n{q}\n" for h, q in planted) + f">lbl|10||{len(seq)}|fresh_1/1\n{seq}\n")
    b = tmp_path / "planted"
    r = convert_cli(extra, "--mapping", mapping, "--out", b, "--no-progress", "--tokenizer",
                    fmt.read_manifest(out / "train")["tokenizer"]["name"], "--max-length", str(train.max_length))
    assert r.returncode == 0, r.stderr
    r = convert_cli("leakage", out / "train", b, "--no-progress", "--json")
    assert r.returncode == 1, r.stderr
    res = json.loads(r.stdout)
    assert res["leak"]
    assert (res["fragments"]["distinct"], res["fragments"]["rows_b"]) == (2, 4)
    assert (res["sequences"]["distinct"], res["sequences"]["rows_b"]) == (5, 5)
    # The examples trace back to input records of both datasets.
    def fragment(header: str) -> str:
        return header.split("|")[-1].rsplit("/", 1)[0]

    for ex in res["fragments"]["examples"]:
        assert fragment(recs[ex["record_a"]][0]) == fragment(planted[ex["record_b"]][0])
    r = convert_cli("leakage", out / "train", b, "--no-progress")
    assert r.returncode == 1 and "FOUND" in r.stdout and "input record" in r.stdout
    # Sequences only (the renamed read) are ignored by --fragments-only; the fragments are not.
    r = convert_cli("leakage", out / "train", b, "--no-progress", "--fragments-only")
    assert r.returncode == 1 and "not checked (--fragments-only)" in r.stdout


@pytest.mark.parametrize("passes", [1, 3])
def test_leakage_counts_do_not_depend_on_passes(reads, tmp_path: Path, passes: int) -> None:
    inp, mapping = reads
    a, b = tmp_path / "a", tmp_path / "b"
    assert convert_cli(inp, "--mapping", mapping, "--out", a, "--reads-per-shard", "100", "--no-progress").returncode == 0
    half = "\n".join(inp.read_text().splitlines()[:300]) + "\n"  # records 0..149: 75 fragments
    (tmp_path / "half.fa").write_text(half)
    assert convert_cli(tmp_path / "half.fa", "--mapping", mapping, "--out", b, "--reads-per-shard", "64",
                       "--no-progress", "--max-length", str(fmt.read_manifest(a)["max_length"])).returncode == 0
    res = find_leakage(a, b, passes=passes)
    assert res["passes"] == passes
    assert res["fragments"]["distinct"] == 75 and res["fragments"]["rows_b"] == 150
    assert res["sequences"]["distinct"] == 150 and res["sequences"]["rows_b"] == 150


def test_leakage_errors(reads, tmp_path: Path) -> None:
    inp, mapping = reads
    a = tmp_path / "a"
    assert convert_cli(inp, "--mapping", mapping, "--out", a, "--no-progress").returncode == 0
    for args in ((a, a), (a, tmp_path / "missing")):
        r = convert_cli("leakage", *args, "--no-progress")
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error:")


def test_row_hash_distinguishes_length() -> None:
    ids = np.array([[5, 6, 0, 0], [5, 6, 0, 0], [5, 6, 7, 0], [6, 5, 0, 0]], dtype=np.int16)
    h = row_hashes(ids)
    assert h[0] == h[1] and len({int(x) for x in h}) == 3


def test_leakage_reads_through_the_checked_reader(reads, tmp_path: Path) -> None:
    """A shard that is a symlink is refused, as every reader of the format refuses it."""
    from convert.leakage import LeakageError

    inp, mapping = reads
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert convert_cli(inp, "--mapping", mapping, "--out", out, "--reads-per-shard", "200",
                           "--no-progress").returncode == 0
    shard = sorted(b.glob("shard-*.h5"))[-1]
    real = tmp_path / "elsewhere.h5"
    shard.rename(real)
    shard.symlink_to(real)
    with pytest.raises(LeakageError, match="symlink"):
        find_leakage(a, b)
