"""End to end: real inputs -> real HDF5 shards; reconciliation, round trip, --jobs invariance."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pyfastx
import pytest

from conftest import convert_cli, write_reads
from convert import ConvertOptions, convert
import shards as fmt
from shards.reader import ShardReader
from convert.tokenizers import load_tokenizer
from convert.verify import verify_dataset


def _convert(inp: Path, mapping: Path, out: Path, **kw) -> dict:
    opts = ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), progress=False, **kw)
    return convert(opts)


def _shard(out: Path, s: int) -> dict[str, np.ndarray]:
    """Every dataset of shard ``s`` of the dataset at ``out``, read through the format's reader."""
    reader = ShardReader(out)
    return {name: reader.read_vector(s, name) for name in fmt.DATASET_DTYPES
            if reader.offsets[s].get(name) is not None}


def _hashes(out: Path) -> dict:
    m = json.loads((out / "manifest.json").read_text())
    return {e["file"]: e["sha256"] for e in m["shards"]}


def test_report_reconciles_and_manifest(reads: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = reads
    report = _convert(inp, mapping, tmp_path / "out", reads_per_shard=300)
    assert report["records_in"] == 800 == report["written"] + report["skipped"]
    m = fmt.read_manifest(tmp_path / "out")
    assert m["totals"]["num_rows"] == 800 and m["totals"]["num_shards"] == 3
    assert [e["num_rows"] for e in m["shards"]] == [300, 300, 200]
    assert m["tokenizer"]["name"] == "metagene-1" and m["tokenizer"]["pad_id"] == 0
    assert m["label_class_ids"] == [10, 20, 30, 40]
    assert m["max_length"] % 8 == 0 and 40 <= m["max_length"] <= 64
    for e in m["shards"]:
        assert fmt.file_sha256(tmp_path / "out" / e["file"]) == e["sha256"]
        attrs = fmt.read_shard_attrs(tmp_path / "out" / e["file"])
        assert attrs["format_version"] == fmt.FORMAT_VERSION and attrs["tokenizer"] == m["tokenizer"]
    assert sum(report["per_class"].values()) == 800
    assert not list(tmp_path.glob(".*readshard-partial"))
    assert verify_dataset(tmp_path / "out")["ok"]


@pytest.mark.parametrize("tokenizer", ["metagene-1", "dnabert-6mer", "char"])
def test_round_trip_and_labels(reads: tuple[Path, Path], tmp_path: Path, tokenizer: str) -> None:
    inp, mapping = reads
    out = tmp_path / "out"
    _convert(inp, mapping, out, tokenizer=tokenizer, reads_per_shard=256, max_length=160)
    m = fmt.read_manifest(out)
    tok = load_tokenizer(tokenizer)
    rows = []
    for s, e in enumerate(m["shards"]):
        mm = _shard(out, s)
        rows += [(mm["input_ids"][r], int(mm["lengths"][r]), int(mm["class_ids"][r]), int(mm["mates"][r]),
                  int(mm["read_lengths"][r]), int(mm["tax_ids"][r])) for r in range(e["num_rows"])]
    src = list(pyfastx.Fastx(str(inp)))
    assert len(rows) == len(src)
    for (ids, n, cid, mate, rl, tax), (name, seq) in zip(rows, src):
        assert tok.decode(ids[:n]) == seq
        parts = name.split("|")
        assert cid == int(parts[1]) and mate == int(name[-1]) and rl == len(seq)
        assert tax == (int(parts[2]) if parts[2] else -1)


@pytest.mark.parametrize("jobs, parallel", [(2, "auto"), (2, "processes"), (3, "threads")])
def test_jobs_do_not_change_output(reads: tuple[Path, Path], tmp_path: Path, jobs: int, parallel: str) -> None:
    inp, mapping = reads
    r1 = _convert(inp, mapping, tmp_path / "j1", reads_per_shard=150, jobs=1)
    r2 = _convert(inp, mapping, tmp_path / "j2", reads_per_shard=150, jobs=jobs, parallel=parallel)
    assert r1["parallel"] == "serial"
    # Units of 150 reads are encoded by Hugging Face, per read (it holds the GIL): auto picks processes.
    assert r2["parallel"] == ("processes" if parallel == "auto" else parallel)
    assert _hashes(tmp_path / "j1") == _hashes(tmp_path / "j2")
    assert (tmp_path / "j1" / "manifest.json").read_bytes() == (tmp_path / "j2" / "manifest.json").read_bytes()


@pytest.mark.parametrize("kind", ["fastq", "gzip", "multiline"])
def test_input_kinds_give_same_tokens(tmp_path: Path, kind: str) -> None:
    plain, mapping = write_reads(tmp_path / "a" / "r.fa", n_per_class=60)
    other, _ = write_reads(
        tmp_path / "b" / ("r.fq" if kind == "fastq" else "r.fa.gz" if kind == "gzip" else "r.fa"),
        n_per_class=60, fastq=kind == "fastq", gz=kind == "gzip", line_width=60 if kind == "multiline" else 0,
    )
    _convert(plain, mapping, tmp_path / "o1", max_length=64)
    _convert(other, mapping, tmp_path / "o2", max_length=64)
    a, b = _shard(tmp_path / "o1", 0), _shard(tmp_path / "o2", 0)
    for k in ("input_ids", "lengths", "labels", "class_ids", "tax_ids", "mates", "read_lengths"):
        assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compressed_layout(reads: tuple[Path, Path], tmp_path: Path, compression: str) -> None:
    inp, mapping = reads
    _convert(inp, mapping, tmp_path / "plain", max_length=64)
    _convert(inp, mapping, tmp_path / "comp", max_length=64, layout="compressed", compression=compression)
    m = fmt.read_manifest(tmp_path / "comp")
    assert m["layout"] == "compressed" and m["compression"] == compression
    e = m["shards"][0]
    with h5py.File(tmp_path / "comp" / e["file"], "r") as f:
        d = f["input_ids"]
        assert d.chunks is not None and d.compression == compression and d.shuffle
        comp_ids = d[:]
    plain_ids = _shard(tmp_path / "plain", 0)["input_ids"]
    assert np.array_equal(comp_ids, plain_ids)
    assert verify_dataset(tmp_path / "comp")["ok"]


def test_truncation_counted(reads: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = reads
    report = _convert(inp, mapping, tmp_path / "out", max_length=16)
    assert report["truncated"] == report["written"] == 800
    mm = _shard(tmp_path / "out", 0)
    assert (mm["lengths"] == 16).all() and (mm["input_ids"][:, -1] == 4).all()  # EOS kept


def test_class_index_csr(reads: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = reads
    _convert(inp, mapping, tmp_path / "out", reads_per_shard=300)
    m = fmt.read_manifest(tmp_path / "out")
    for s in range(len(m["shards"])):
        mm = _shard(tmp_path / "out", s)
        for c in range(4):
            rows = mm["class_rows"][mm["class_offsets"][c] : mm["class_offsets"][c + 1]]
            assert (mm["labels"][rows] == c).all()
            assert rows.size == (mm["labels"] == c).sum()


def test_cli_summary_and_progress(reads: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = reads
    res = convert_cli(inp, "--mapping", mapping, "--out", tmp_path / "out", "--jobs", "2")
    assert res.returncode == 0, res.stderr
    assert "800 reads in = 800 written + 0 skipped" in res.stdout
    assert "reads/s" in res.stderr and "convert" in res.stderr  # the tqdm bar


def test_config_file_and_flag_override(reads: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = reads
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  mapping: {mapping}\ntokenizer:\n  name: char\n  max_length: 200\noutput:\n  reads_per_shard: 500\n")
    res = convert_cli(inp, "--config", cfg, "--max-length", "152", "--out", tmp_path / "out", "--no-progress")
    assert res.returncode == 0, res.stderr
    m = fmt.read_manifest(tmp_path / "out")
    assert m["tokenizer"]["name"] == "char" and m["max_length"] == 152 and len(m["shards"]) == 2
    cfg.write_text("tokenizer:\n  nmae: char\n")
    res = convert_cli(inp, "--config", cfg, "--out", tmp_path / "o2", "--mapping", mapping)
    assert res.returncode == 2 and "unknown config keys" in res.stderr


def test_help_explains_options() -> None:
    res = convert_cli("--help")
    for opt in ("--config", "--mapping", "--header-regex", "--tokenizer", "--max-length", "--layout",
                "--compression", "--reads-per-shard", "--jobs", "--on-bad-record", "--resume", "--overwrite"):
        assert opt in res.stdout


def test_verify_and_stats_cli(reads: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = reads
    _convert(inp, mapping, tmp_path / "out")
    res = convert_cli("verify", tmp_path / "out", "--source", inp, "--sample", "0.5")
    assert res.returncode == 0 and "OK" in res.stdout and "re-read with pyfastx" in res.stdout
    res = convert_cli("stats", tmp_path / "out", "--json")
    assert json.loads(res.stdout)["reads"] == 800
