"""The converter's smaller defaults and messages: --jobs default, verify progress and FASTQ
sources, --on-bad-record error staging, --compression without the compressed layout, tax ids
that contradict the mapping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import convert_cli, write_reads
from convert import ConvertOptions
import shards as fmt
from convert.pipeline import staging_dir


def test_jobs_default_is_usable_cores(tmp_path: Path) -> None:
    assert ConvertOptions(inputs=[], out="").jobs == len(os.sched_getaffinity(0))
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=10)
    r = convert_cli(inp, "--mapping", mapping, "--out", tmp_path / "o", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / fmt.REPORT_NAME).read_text())["jobs"] == len(os.sched_getaffinity(0))


def test_verify_shows_progress(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=10)
    assert convert_cli(inp, "--mapping", mapping, "--out", tmp_path / "o", "--no-progress").returncode == 0
    r = convert_cli("verify", tmp_path / "o", "--source", inp)
    assert r.returncode == 0 and "verify shards" in r.stderr and "verify sources" in r.stderr
    r = convert_cli("verify", tmp_path / "o", "--no-progress")
    assert r.returncode == 0 and "verify shards" not in r.stderr


@pytest.mark.parametrize("gz", [False, True])
def test_verify_source_fastq_with_one_malformed_record(tmp_path: Path, gz: bool) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fq", n_per_class=50, fastq=True)
    lines = inp.read_text().splitlines(keepends=True)
    lines[10 * 4 + 3] = lines[10 * 4 + 3][:20] + "\n"  # record 10: quality shorter than the sequence
    text = "".join(lines).encode()
    if gz:
        import gzip

        inp = inp.with_suffix(".fq.gz")
        inp.write_bytes(gzip.compress(text))
    else:
        inp.write_bytes(text)
    out = tmp_path / "o"
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / fmt.REPORT_NAME).read_text())["skipped_by_reason"]["malformed_fastq"] == 1
    v = convert_cli("verify", out, "--source", inp, "--sample", "1", "--no-progress")
    assert v.returncode == 0, v.stdout
    assert "200 records re-read" in v.stdout and "1 quarantined records found" in v.stdout


def test_on_bad_record_error_leaves_nothing_blocking_the_next_run(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=100)
    text = inp.read_text().splitlines(keepends=True)
    text[300:300] = [">not_a_header\n", "ACGT\n"]
    inp.write_text("".join(text))
    out = tmp_path / "o"
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress", "--on-bad-record", "error",
                    "--reads-per-shard", "50", "--jobs", "2")
    assert r.returncode == 2 and "line 301" in r.stderr
    assert not staging_dir(out).exists() and not out.exists()
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "flags, ok",
    [
        (["--compression", "lzf"], False),
        (["--compression", "gzip", "--layout", "mmap"], False),
        (["--compression", "lzf", "--layout", "compressed"], True),
        (["--layout", "compressed"], True),
        ([], True),
    ],
)
def test_compression_requires_compressed_layout(tmp_path: Path, flags: list[str], ok: bool) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=10)
    out = tmp_path / "o"
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress", *flags)
    if ok:
        assert r.returncode == 0, r.stderr
        want = flags[1] if flags and flags[0] == "--compression" else ("gzip" if flags else "none")
        assert fmt.read_manifest(out)["compression"] == want
    else:
        assert r.returncode == 2 and "--layout compressed" in r.stderr and "Traceback" not in r.stderr
        assert not out.exists() and not staging_dir(out).exists()


def test_header_tax_id_contradicting_mapping_is_counted_and_warned(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=40)
    # Class 10 has tax id 1000 in the mapping (and in its headers); change 6 headers to 4242.
    lines = inp.read_text().splitlines(keepends=True)
    changed = 0
    for i, line in enumerate(lines):
        if line.startswith(">lbl|10|1000|") and changed < 6:
            lines[i] = line.replace("|1000|", "|4242|")
            changed += 1
    inp.write_text("".join(lines))
    out = tmp_path / "o"
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / fmt.REPORT_NAME).read_text())
    tc = report["tax_id_conflicts"]
    assert tc["reads"] == 6
    (entry,) = tc["per_class"].values()
    assert entry == {"reads": 6, "mapping_tax_id": 1000, "header_tax_ids": [4242]}
    assert "warning: 6 reads have a header tax id that contradicts the mapping" in r.stderr
    inp2, mapping2 = write_reads(tmp_path / "in2" / "r.fa", n_per_class=20)
    r = convert_cli(inp2, "--mapping", mapping2, "--out", tmp_path / "o3", "--no-progress")
    assert "warning" not in r.stderr
    assert json.loads((tmp_path / "o3" / fmt.REPORT_NAME).read_text())["tax_id_conflicts"]["reads"] == 0
