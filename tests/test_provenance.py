"""Per-row provenance: input record numbers and fragment hashes, stored and exposed by the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_reads
from convert import ConvertOptions, convert
import shards as fmt
from convert.provenance import FNV_OFFSET, fnv1a64, fnv1a64_one, fragment_name, hash_names
from loaders import ShardDataset


@pytest.mark.parametrize(
    "data, want",
    [
        (b"", FNV_OFFSET),
        (b"a", 0xAF63DC4C8601EC8C),  # published FNV-1a 64 test vector
        (b"foobar", 0x85944171F73967E8),  # published FNV-1a 64 test vector
    ],
)
def test_fnv1a64_known_vectors(data: bytes, want: int) -> None:
    assert fnv1a64_one(data) == want
    assert int(hash_names([data])[0]) == want


def test_vectorized_hash_matches_reference() -> None:
    rng = np.random.default_rng(1)
    names = [bytes(rng.integers(0, 256, size=int(rng.integers(0, 40)), dtype=np.uint8)) for _ in range(300)]
    got = hash_names(names)
    assert got.dtype == np.uint64
    assert [int(h) for h in got] == [fnv1a64_one(x) for x in names]
    lens = np.array([len(x) for x in names])
    offsets = np.concatenate(([0], np.cumsum(lens)))
    assert np.array_equal(fnv1a64(b"".join(names), offsets), got)


@pytest.mark.parametrize(
    "read_id, group, want",
    [
        (b"frag7/1", None, b"frag7"),
        (b"frag7/2", None, b"frag7"),
        (b"frag7/3", None, b"frag7/3"),
        (b"frag7", None, b"frag7"),
        (b"lbl|10||101|g0_1/1", b"g0_1", b"g0_1"),
        (b"x/1", b"", b"x"),
    ],
)
def test_fragment_name(read_id: bytes, group: bytes | None, want: bytes) -> None:
    assert fragment_name(read_id, group) == want


def _records(path: Path) -> list[tuple[str, str]]:
    """(header, sequence) of a simple one-line FASTA."""
    lines = path.read_text().splitlines()
    return [(lines[i][1:], lines[i + 1]) for i in range(0, len(lines), 2)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_rows_trace_back_to_input_records(tmp_path: Path, jobs: int) -> None:
    a, mapping = write_reads(tmp_path / "in" / "a.fa", n_per_class=60, seed=1)
    b, _ = write_reads(tmp_path / "in" / "b.fa", n_per_class=40, seed=2)
    # Plant skipped records in the second input: its record numbers must still count them.
    text = b.read_text().splitlines(keepends=True)
    text[4:4] = [">not_a_label_header\n", "ACGT\n"]
    text[10:10] = [">lbl|999||4|zz_1/1\n", "ACGT\n"]
    b.write_text("".join(text))
    out = tmp_path / "out"
    report = convert(ConvertOptions(inputs=[str(a), str(b)], out=str(out), mapping=str(mapping),
                                    reads_per_shard=37, jobs=jobs, progress=False))
    assert report["skipped"] == 2
    records = _records(a) + _records(b)
    ds = ShardDataset(out)
    rn = ds.record_numbers
    assert rn.dtype == np.int64 and len(rn) == len(ds) == len(records) - 2
    # Every written row's record number points at the input record it came from.
    for i in range(0, len(ds), 7):
        header, _ = records[int(rn[i])]
        name = header.split("|")[-1].rsplit("/", 1)[0]
        assert int(ds.fragment_hashes[i]) == fnv1a64_one(name.encode())
        assert int(ds.class_ids[i]) == int(header.split("|")[1])
    # Written + quarantined record numbers are every record exactly once (the quarantine
    # counts per input file; the dataset's numbers are global across inputs).
    m = fmt.read_manifest(out)
    assert m["source"]["records_per_input"] == [len(_records(a)), len(_records(b))]
    q = [line.split("\t") for line in (out / "quarantine.tsv").read_text().splitlines()[1:]]
    q_global = [int(rec) + (len(_records(a)) if Path(f).name == "b.fa" else 0) for f, _, rec, _ in q]
    assert sorted(rn.tolist() + q_global) == list(range(len(records)))
    # Mates share a fragment hash; different fragments do not.
    fh = ds.fragment_hashes
    assert fh.dtype == np.uint64
    names = [records[int(r)][0].split("|")[-1].rsplit("/", 1)[0] for r in rn]
    assert len(set(fh.tolist())) == len(set(names))
    assert {m_["input"] for m_ in m["shards"]} == {0, 1}


def test_provenance_identical_for_any_jobs(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=50, seed=3)
    got = []
    for jobs in (1, 3):
        out = tmp_path / f"o{jobs}"
        convert(ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), reads_per_shard=23,
                               jobs=jobs, progress=False))
        got.append(json.loads((out / "manifest.json").read_text())["shards"])
    assert got[0] == got[1]


def test_custom_regex_without_name_group_strips_mate_suffix(tmp_path: Path) -> None:
    inp = tmp_path / "r.fa"
    inp.write_text("".join(f">c5_r{i // 2}/{1 + i % 2} x\nACGTACGTAA\n" for i in range(10)))
    mapping = tmp_path / "m.tsv"
    mapping.write_text("class_id\ttax_id\tspecies\n5\t\tfive\n")
    out = tmp_path / "o"
    convert(ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), progress=False,
                           header_regex=r"^c(?P<class_id>\d+)_r\d+/(?P<mate>\d)$"))
    ds = ShardDataset(out)
    assert ds.record_numbers.tolist() == list(range(10))
    assert [int(h) for h in ds.fragment_hashes] == [fnv1a64_one(f"c5_r{i // 2}".encode()) for i in range(10)]


def test_old_format_version_refused(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=10)
    out = tmp_path / "o"
    convert(ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), progress=False))
    m = json.loads((out / "manifest.json").read_text())
    m["format_version"] = 1  # a dataset from before provenance: no record numbers to read
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(fmt.FormatError, match="version 1"):
        ShardDataset(out)
