"""Issue 21, item 8: strand-aware leakage. Each row stores ``strand_hashes`` (the smaller of the
FNV-1a 64 of its bases and of its reverse complement's); ``leakage`` finds a val read that is
a train read's reverse complement; datasets without the column still work and the report
says what was not checked."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from _loader_helpers import build_dataset
from conftest import write_reads
from convert import fastparse
import shards as fmt
from convert.cli import main
from loaders import ShardDataset

_COMP = str.maketrans("ACGTN", "TGCAN")


def _run(*args: str | os.PathLike[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def _records(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    return [(lines[2 * i][1:], lines[2 * i + 1]) for i in range(len(lines) // 2)]


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A converted training set (DNABERT 6-mers), its input and mapping."""
    tmp = tmp_path_factory.mktemp("strand")
    inp, mapping = write_reads(tmp / "in" / "r.fa", n_per_class=60, classes=3)
    rc, _, err = _run(inp, "--mapping", mapping, "--out", tmp / "train", "--tokenizer", "dnabert-6mer",
                      "--reads-per-shard", "70", "--no-progress")
    assert rc == 0, err
    return tmp / "train", inp, mapping


def _val(tmp_path: Path, mapping: Path, records: list[tuple[str, str]], *extra: str) -> Path:
    fa = tmp_path / "val.fa"
    fa.write_text("".join(f">{h}\n{s}\n" for h, s in records))
    rc, _, err = _run(fa, "--mapping", mapping, "--out", tmp_path / "val", "--no-progress", *extra)
    assert rc == 0, err
    return tmp_path / "val"


def test_strand_hashes_compiled_numpy_and_reference_agree() -> None:
    rng = np.random.default_rng(3)
    lens = rng.integers(0, 200, 500)
    offsets = np.concatenate(([0], np.cumsum(lens))).astype(np.int64)
    seqs = np.frombuffer(b"ACGTN", dtype=np.uint8)[rng.integers(0, 5, int(offsets[-1]))].copy()
    fast = fastparse.strand_hashes(seqs, offsets)
    assert fast.dtype == np.uint64 and fast.shape == (500,)
    assert np.array_equal(fast, fastparse._strand_hashes_numpy(seqs, offsets))
    assert fast.tolist() == [fastparse.strand_hash_one(seqs[a:b].tobytes()) for a, b in zip(offsets[:-1], offsets[1:])]
    rc = [seqs[a:b].tobytes().decode().translate(_COMP)[::-1].encode() for a, b in zip(offsets[:-1], offsets[1:])]
    rc_offsets = np.concatenate(([0], np.cumsum([len(s) for s in rc]))).astype(np.int64)
    assert np.array_equal(fastparse.strand_hashes(b"".join(rc), rc_offsets), fast)  # either strand, one hash
    assert fastparse.strand_hash_one(b"AACG") != fastparse.strand_hash_one(b"AAGC")


def test_converter_stores_the_strand_hash_of_every_read(train) -> None:
    out, inp, _ = train
    recs = _records(inp)
    ds = ShardDataset(out)
    m = fmt.read_manifest(out)
    assert all("strand_hashes" in e["offsets"] for e in m["shards"])
    import h5py

    stored = np.concatenate([h5py.File(out / e["file"], "r")["strand_hashes"][:] for e in m["shards"]])
    want = [fastparse.strand_hash_one(recs[r][1].encode()) for r in ds.record_numbers.tolist()]
    assert stored.tolist() == want
    rc, stdout, _ = _run("verify", out, "--source", inp, "--sample", "1", "--no-progress")
    assert rc == 0, stdout


@pytest.mark.parametrize("tokenizer", ["dnabert-6mer", "char"])
def test_a_reverse_complement_read_is_leakage(train, tmp_path: Path, tokenizer: str) -> None:
    out, inp, mapping = train
    header, seq = _records(inp)[7]
    cid = header.split("|")[1]
    # The same DNA read off the other strand, under a fresh fragment name and in lower case
    # (normalised bases are compared), tokenized alike or not.
    rc_seq = seq.translate(_COMP)[::-1]
    val = _val(tmp_path, mapping, [(f"lbl|{cid}||{len(seq)}|fresh_1/1", rc_seq.lower()),
                                   (f"lbl|{cid}||8|other_1/1", "ACGTTGCA")], "--tokenizer", tokenizer)
    rc, stdout, stderr = _run("leakage", out, val, "--no-progress", "--json")
    assert rc == 1, stdout + stderr
    res = json.loads(stdout)
    assert res["fragments"]["distinct"] == 0
    assert (res["strands"]["distinct"], res["strands"]["rows_b"]) == (1, 1)
    ex = res["strands"]["examples"][0]
    assert (ex["record_a"], ex["record_b"]) == (7, 0)
    rc, stdout, _ = _run("leakage", out, val, "--no-progress")
    assert rc == 1 and "reads on either strand (a read or its reverse complement) in both: 1" in stdout
    assert stdout.rstrip().endswith("FOUND: the datasets share fragments or sequences")


def test_datasets_without_strand_hashes_still_compare_and_say_so(tmp_path: Path) -> None:
    old_a = build_dataset(tmp_path / "a", (50, 30), seed=1).path  # written without strand_hashes
    old_b = build_dataset(tmp_path / "b", (40,), seed=2).path
    assert "strand_hashes" not in fmt.read_manifest(old_a)["shards"][0]["offsets"]
    rc, stdout, stderr = _run("leakage", old_a, old_b, "--no-progress", "--json")
    res = json.loads(stdout)
    assert res["strands"] is None and "no strand hashes" in res["strands_skipped"]
    assert str(old_a) in res["strands_skipped"] and str(old_b) in res["strands_skipped"]
    rc, stdout, stderr = _run("leakage", old_a, old_b, "--no-progress")
    assert "reverse complements: not checked" in stdout and "Traceback" not in stdout + stderr
    assert rc in (0, 1) and (rc == 1) == ("FOUND" in stdout)
    if rc == 0:
        assert "(reverse complements not checked)" in stdout.splitlines()[-1]


def _without_strand_hashes(src: Path, dst: Path) -> None:
    """``src`` rewritten as a converter before ``strand_hashes`` wrote it: same shards minus the column."""
    import h5py

    dst.mkdir()
    m = fmt.read_manifest(src)
    for k, e in enumerate(m["shards"]):
        with h5py.File(src / e["file"], "r") as f:
            vectors = {name: f[name][:] for name in fmt.ROW_VECTORS if name != "class_rows"}
            ids = f["input_ids"][:]
            source = json.loads(f.attrs["source"])
        entry = fmt.write_shard(dst / e["file"], input_ids=ids, vectors=vectors, num_classes=m["num_classes"],
                                tokenizer=m["tokenizer"], shard_index=k, layout=m["layout"],
                                compression=m["compression"], extra_attrs={"source": source},
                                dataset_id=m["dataset_id"])
        e.update(entry)
    fmt.write_manifest(dst, m)
    for name in (fmt.REPORT_NAME, fmt.QUARANTINE_NAME, "quarantine.tsv"):
        (dst / name).write_bytes((src / name).read_bytes())


def test_an_older_dataset_without_the_column_loads_verifies_and_repairs(train, tmp_path: Path) -> None:
    out, inp, mapping = train
    old = tmp_path / "old"
    _without_strand_hashes(out, old)
    assert not any("strand_hashes" in e["offsets"] for e in fmt.read_manifest(old)["shards"])
    assert len(ShardDataset(old)) == len(ShardDataset(out))
    rc, stdout, _ = _run("verify", old, "--source", inp, "--no-progress")
    assert rc == 0, stdout
    before = [e["sha256"] for e in fmt.read_manifest(old)["shards"]]
    (old / fmt.read_manifest(old)["shards"][1]["file"]).write_bytes(b"")  # damaged: --resume re-converts it
    rc, _, err = _run(inp, "--mapping", mapping, "--out", old, "--tokenizer", "dnabert-6mer", "--reads-per-shard", "70",
                      "--no-progress", "--resume")
    assert rc == 0, err
    assert [e["sha256"] for e in fmt.read_manifest(old)["shards"]] == before
    assert fastparse.strand_hashes is not None and _run("verify", old, "--no-progress")[0] == 0
