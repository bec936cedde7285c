"""Fail fast and loud: a regex or mapping that skips most records stops in seconds; the end
check refuses to publish a mostly-skipped dataset; skips in the progress bar; quarantine cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import convert_cli, write_reads
import shards as fmt
from convert.pipeline import staging_dir


def _good_then_bad(path: Path, good: int, bad: int) -> Path:
    """``good`` usable records, then ``bad`` whose class id the mapping lacks."""
    seq = "ACGTTGCAAC" * 3
    lines = [f">lbl|10||30|f{i}/1\n{seq}\n" for i in range(good)]
    lines += [f">lbl|77||30|b{i}/1\n{seq}\n" for i in range(bad)]
    path.write_text("".join(lines))
    mapping = path.parent / "mapping.tsv"
    mapping.write_text("class_id\ttax_id\tspecies\n10\t\tten\n")
    return mapping


@pytest.mark.parametrize(
    "edit, reason, needle",
    [
        (lambda t: t.replace(">lbl|", ">read|"), "header_mismatch", "--header-regex"),
        (None, "unknown_class", "mapping"),
    ],
)
def test_mostly_skipped_stops_before_converting(tmp_path: Path, edit, reason: str, needle: str) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=100)
    if edit is not None:
        inp.write_text(edit(inp.read_text()))
    else:  # a mapping that lists 1 of the 4 classes
        mapping.write_text("\n".join(mapping.read_text().splitlines()[:2]) + "\n")
    out = tmp_path / "out"
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert reason in r.stderr and needle in r.stderr and "Stopped before converting" in r.stderr
    assert "header 'lbl|" in r.stderr or "header 'read|" in r.stderr  # one offending header, quoted
    assert not out.exists() and not staging_dir(out).exists()
    # The advice works: allowing it converts.
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress", "--min-written-fraction", "0")
    assert r.returncode == 0, r.stderr
    assert fmt.read_manifest(out)["source"]["skipped"] > 0


def test_end_check_refuses_to_publish_and_advice_publishes(tmp_path: Path) -> None:
    inp = tmp_path / "r.fa"
    mapping = _good_then_bad(inp, good=10_500, bad=14_000)  # the probe (first 10,000) looks fine
    out = tmp_path / "out"
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress", "--reads-per-shard", "5000")
    assert r.returncode == 2, r.stderr
    assert "nothing was published" in r.stderr and "unknown_class 14,000" in r.stderr
    assert not out.exists()
    advice = "--resume --min-written-fraction 0"
    assert advice in r.stderr
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress", "--reads-per-shard", "5000",
                    *advice.split())
    assert r.returncode == 0, r.stderr
    report = json.loads((out / fmt.REPORT_NAME).read_text())
    assert report["written"] == 10_500 and report["skipped"] == 14_000


def test_written_fraction_threshold_is_an_option(tmp_path: Path) -> None:
    inp = tmp_path / "r.fa"
    mapping = _good_then_bad(inp, good=300, bad=700)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("convert:\n  min_written_fraction: 0.25\n")
    r = convert_cli(inp, "--mapping", mapping, "--out", tmp_path / "a", "--no-progress", "--config", cfg)
    assert r.returncode == 0, r.stderr
    r = convert_cli(inp, "--mapping", mapping, "--out", tmp_path / "b", "--no-progress",
                    "--min-written-fraction", "0.35")
    assert r.returncode == 2 and "0.35" in r.stderr
    r = convert_cli(inp, "--mapping", mapping, "--out", tmp_path / "b", "--no-progress",
                    "--min-written-fraction", "1.5")
    assert r.returncode == 2 and "between 0 and 1" in r.stderr


def test_progress_bar_shows_skipped(tmp_path: Path) -> None:
    inp = tmp_path / "r.fa"
    mapping = _good_then_bad(inp, good=300, bad=100)
    r = convert_cli(inp, "--mapping", mapping, "--out", tmp_path / "o", "--reads-per-shard", "100")
    assert r.returncode == 0, r.stderr
    assert "100 skipped" in r.stderr


@pytest.mark.parametrize("jobs", [1, 2])
def test_quarantine_cap_keeps_whole_records_and_counts_the_rest(tmp_path: Path, jobs: int) -> None:
    inp = tmp_path / "r.fa"
    mapping = _good_then_bad(inp, good=300, bad=200)
    out = tmp_path / "o"
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress", "--reads-per-shard", "64",
                    "--quarantine-max-bytes", "2K", "--jobs", str(jobs))
    assert r.returncode == 0, r.stderr
    report = json.loads((out / fmt.REPORT_NAME).read_text())
    q = report["quarantine"]
    fa = (out / fmt.QUARANTINE_NAME).read_bytes()
    assert len(fa) <= 2048 and q["bytes"] == len(fa) and q["max_bytes"] == 2048
    assert fa.count(b">") == q["records_kept"] > 0 and fa.endswith(b"\n")
    assert q["records_kept"] + q["records_not_kept"] == report["skipped"] == 200
    # quarantine.tsv still lists every skipped record; verify agrees.
    assert len((out / "quarantine.tsv").read_text().splitlines()) == 201
    assert "quarantine.fa capped" in r.stdout
    v = convert_cli("verify", out, "--source", inp)
    assert v.returncode == 0, v.stdout
