"""Bad input: skipped and quarantined records, fatal inputs, clear messages, nothing published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, UNREADABLE_INPUTS, convert_cli, run_convert

MAPPING = DATA / "mapping.tsv"


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def test_bad_records_skipped_and_quarantined(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # 5 of 7 bad: allowed explicitly (the default --min-written-fraction 0.5 stops it, see test_failfast).
    res = convert_cli(DATA / "bad_records.fa", "--mapping", MAPPING, "--out", out, "--no-progress",
                      "--min-written-fraction", "0")
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["records_in"] == 7 and report["written"] == 2 and report["skipped"] == 5
    assert report["skipped_by_reason"] == {
        "header_mismatch": 1, "unknown_class": 1, "empty_header": 1, "empty_sequence": 1,
        "non_nucleotide": 1, "malformed_fastq": 0, "too_long": 0,
    }
    quarantine = (out / "quarantine.fa").read_bytes()
    source = (DATA / "bad_records.fa").read_bytes()
    # every skipped record is there verbatim, in input order
    for rec in (b">not_the_seed_format\n", b">lbl|999||40|unknown/1\n", b">\n", b">lbl|7|11|0|empty/1\n", b">lbl|7|11|40|digits/1\nACGT1234ACGT\n"):
        assert rec in quarantine
    assert quarantine in source.replace(b">lbl|7|11|40|ok1/1\n" + source.split(b"\n")[1] + b"\n", b"").replace(
        b">lbl|42||40|ok2/2\n" + source.split(b"\n")[-2] + b"\n", b"")
    tsv = (out / "quarantine.tsv").read_text().splitlines()
    assert tsv[0] == "file\tline\trecord\treason"
    assert [line.split("\t")[1:] for line in tsv[1:]] == [
        ["3", "1", "header_mismatch"], ["5", "2", "unknown_class"], ["7", "3", "empty_header"],
        ["9", "4", "empty_sequence"], ["10", "5", "non_nucleotide"],
    ]


def test_fastq_bad_record(tmp_path: Path) -> None:
    res = convert_cli(DATA / "bad_records.fq", "--mapping", MAPPING, "--out", tmp_path / "o", "--no-progress")
    assert res.returncode == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["skipped_by_reason"]["malformed_fastq"] == 1 and report["written"] == 2


@pytest.mark.parametrize("parallel", [[], ["--jobs", "2", "--parallel", "threads"],
                                      pytest.param(["--jobs", "2", "--parallel", "processes"], marks=pytest.mark.slow)])
def test_on_bad_record_error_names_file_and_line(tmp_path: Path, parallel: list[str]) -> None:
    out = tmp_path / "out"
    # A process pool is not forked from the test process: that case runs as a real process.
    run = run_convert if "processes" in parallel else convert_cli
    res = run(DATA / "bad_records.fa", "--mapping", MAPPING, "--out", out, "--on-bad-record", "error", "--no-progress",
              "--reads-per-shard", "2", *parallel)
    assert res.returncode == 2
    _no_traceback(res.stderr)
    assert "bad_records.fa, line 3" in res.stderr and "header mismatch" in res.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".out.readshard-partial*"))  # the run ended by design: nothing to resume


@pytest.mark.parametrize(
    "name, message", UNREADABLE_INPUTS + [("truncated.fa.gz", "gzip"), ("missing.fa", "no such file")]
)
def test_fatal_inputs(tmp_path: Path, name: str, message: str) -> None:
    out = tmp_path / "out"
    res = convert_cli(DATA / name, "--mapping", MAPPING, "--out", out, "--no-progress", "--jobs", "2")
    assert res.returncode == 2
    _no_traceback(res.stderr)
    assert name in res.stderr and message in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 3
    assert not out.exists()


def test_truncated_gzip_after_good_units(tmp_path: Path) -> None:
    """The first units convert, then the stream breaks: still nothing at --out."""
    out = tmp_path / "out"
    res = convert_cli(DATA / "truncated.fa.gz", "--mapping", MAPPING, "--out", out, "--reads-per-shard", "10", "--no-progress")
    assert res.returncode == 2 and "truncated.fa.gz" in res.stderr and "offset" in res.stderr
    _no_traceback(res.stderr)
    assert not out.exists()


@pytest.mark.parametrize(
    "mapping_text, message",
    [
        ("", "empty mapping"),
        ("tax_id\tspecies\n1\tx\n", "no class_id column"),
        ("class_id\ttax_id\tspecies\nseven\t1\tx\n", "line 2"),
        ("class_id\ttax_id\tspecies\n7\t1\tx\n7\t2\ty\n", "appears twice"),
    ],
)
def test_bad_mapping(tmp_path: Path, mapping_text: str, message: str) -> None:
    mp = tmp_path / "m.tsv"
    mp.write_text(mapping_text)
    res = convert_cli(DATA / "multiline.fa", "--mapping", mp, "--out", tmp_path / "out")
    assert res.returncode == 2 and message in res.stderr and "m.tsv" in res.stderr
    _no_traceback(res.stderr)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--header-regex", "(unclosed"], "not a valid regular expression"),
        (["--header-regex", r"^(?P<name>.*)$"], "no named group"),
        (["--tokenizer", "nope"], "unknown tokenizer"),
        (["--max-length", "many"], "--max-length"),
        (["--max-length", "0"], "--max-length"),
        (["--reads-per-shard", "0"], "--reads-per-shard"),
    ],
)
def test_bad_settings(tmp_path: Path, args: list[str], message: str) -> None:
    res = convert_cli(DATA / "multiline.fa", "--mapping", MAPPING, "--out", tmp_path / "out", *args)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    _no_traceback(res.stderr)
    assert not (tmp_path / "out").exists()


def test_missing_mapping_is_explained(tmp_path: Path) -> None:
    res = convert_cli(DATA / "multiline.fa", "--out", tmp_path / "out")
    assert res.returncode == 2 and "--mapping" in res.stderr


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert convert_cli(DATA / "multiline.fa", "--mapping", MAPPING, "--out", out).returncode == 0
    res = convert_cli(DATA / "crlf.fa", "--mapping", MAPPING, "--out", out)
    assert res.returncode == 2 and "--overwrite" in res.stderr
    res = convert_cli(DATA / "crlf.fa", "--mapping", MAPPING, "--out", out, "--overwrite")
    assert res.returncode == 0
    assert json.loads((out / "report.json").read_text())["records_in"] == 2


def test_label_checks_reported(tmp_path: Path) -> None:
    text = (
        ">lbl|7|11|40|a/1\n" + "ACGT" * 10 + "\n"
        ">lbl|7|12|40|b/1\n" + "ACGT" * 10 + "\n"   # same class, another tax id
        ">lbl|42||99|c/1\n" + "ACGT" * 10 + "\n"    # header readlen 99, sequence 40
    )
    inp = tmp_path / "r.fa"
    inp.write_text(text)
    res = convert_cli(inp, "--mapping", MAPPING, "--out", tmp_path / "out", "--no-progress")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["classes_with_several_tax_ids"] == {"7": [11, 12]}
    assert report["readlen_mismatch"] == 1 and report["written"] == 3


def test_iupac_reported(tmp_path: Path) -> None:
    res = convert_cli(DATA / "iupac.fa", "--mapping", MAPPING, "--out", tmp_path / "out", "--no-progress")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert res.returncode == 0 and report["iupac_replaced_reads"] == 1 and report["iupac_replaced_bases"] == 12
