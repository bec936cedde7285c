"""``python -m convert verify DIR --source INPUT...``: the end-to-end proof that nothing was lost.

Passes on a good conversion (quarantined records included); fails, with exit 1 and a clear
message, when tokens were altered behind the manifest's back (re-hashed, so only the source
check can see it), when a source record was removed, and when a quarantined record moved.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA, Ran, convert_cli, write_reads
from convert import ConvertOptions, convert
import shards as fmt
from convert.verify import verify_dataset

BAD = [
    b">not_the_seed_format\nACGTACGTACGTACGT\n",
    b">lbl|999999||16|unknown/1\nACGTACGTACGTACGT\n",
    b">lbl|20||12|digits/1\nACGT1234ACGT\n",
    b">lbl|10|1000|0|empty/1\n",
]


def _records(data: bytes) -> list[bytes]:
    """FASTA records of ``data``, each ``>header\n...`` ending with a newline."""
    return [b">" + r.rstrip(b"\n") + b"\n" for r in data[1:].split(b"\n>")] if data else []


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Reads with bad records spread through them, converted (metagene-1, 3 shards)."""
    d = tmp_path_factory.mktemp("vsrc")
    inp, mapping = write_reads(d / "in" / "clean.fa", n_per_class=100, classes=4)
    recs = _records(inp.read_bytes())
    for i, bad in enumerate(BAD):
        recs.insert(37 + 90 * i, bad)
    src = d / "in" / "reads.fa"
    src.write_bytes(b"".join(recs))
    out = d / "ds"
    report = convert(ConvertOptions(inputs=[str(src)], out=str(out), mapping=str(mapping), reads_per_shard=150,
                                    progress=False))
    assert report["skipped"] == len(BAD) and report["written"] == 400
    return src, mapping, out


def _verify(ds: Path, *sources: Path, sample: str = "1.0") -> Ran:
    return convert_cli("verify", ds, "--source", *sources, "--sample", sample)


def _copy(ds: Path, tmp_path: Path) -> Path:
    shutil.copytree(ds, tmp_path / "ds")
    return tmp_path / "ds"


def test_good_conversion_with_quarantine_passes(good) -> None:
    src, _, ds = good
    res = _verify(ds, src)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{400 + len(BAD)} records re-read with pyfastx" in res.stdout
    assert "400 sampled reads decoded and matched" in res.stdout
    assert f"{len(BAD)} quarantined records found at their positions" in res.stdout
    assert "OK:" in res.stdout
    # the default sample (1%) passes too
    assert _verify(ds, src, sample="0.01").returncode == 0


def test_gzip_and_multiline_sources(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa.gz", n_per_class=50, classes=2, gz=True)
    ml, _ = write_reads(tmp_path / "in2" / "r.fa", n_per_class=50, classes=2, line_width=60, seed=1)
    out = tmp_path / "ds"
    assert convert_cli(inp, ml, "--mapping", mapping, "--out", out, "--no-progress").returncode == 0
    res = _verify(out, inp, ml)
    assert res.returncode == 0, res.stdout
    assert "200 sampled reads decoded" in res.stdout


def test_tokens_altered_and_rehashed_fail_only_with_source(good, tmp_path: Path) -> None:
    src, _, built = good
    ds = _copy(built, tmp_path)
    m = json.loads((ds / "manifest.json").read_text())
    e = m["shards"][1]
    with h5py.File(ds / e["file"], "r+") as f:
        ids = f["input_ids"][:]
        lengths = f["lengths"][:]
        row = 17
        n = int(lengths[row])
        ids[row, :n] = ids[row, :n][::-1].copy()  # same tokens, same length, reversed: valid ids
        assert (ids[row, :n] != f["input_ids"][row, :n]).any()
        f["input_ids"][row] = ids[row]
    e["sha256"], e["bytes"] = fmt.file_sha256(ds / e["file"]), (ds / e["file"]).stat().st_size
    (ds / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    assert verify_dataset(ds)["ok"], "without --source the consistent alteration is invisible"
    res = _verify(ds, src)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "stored tokens decode to" in res.stdout and "FAILED" in res.stdout and src.name in res.stdout


def test_source_record_removed(good, tmp_path: Path) -> None:
    src, _, ds = good
    recs = _records(src.read_bytes())
    del recs[250]  # a good record
    cut = tmp_path / src.name
    cut.write_bytes(b"".join(recs))
    res = _verify(ds, cut)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"pyfastx reads {400 + len(BAD) - 1} records" in res.stdout and "FAILED" in res.stdout


def test_quarantined_record_moved(good, tmp_path: Path) -> None:
    src, _, ds = good
    recs = _records(src.read_bytes())
    i = next(k for k, r in enumerate(recs) if r.startswith(b">not_the_seed_format"))
    recs[i], recs[i + 1] = recs[i + 1], recs[i]  # good reads keep their order: only positions move
    moved = tmp_path / src.name
    moved.write_bytes(b"".join(recs))
    res = _verify(ds, moved)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "1 quarantined records were not found at their recorded positions" in res.stdout
    assert f"record {i}: quarantined as header_mismatch, but the source record there is usable" in res.stdout


def test_missing_or_unreadable_source_is_reported(good, tmp_path: Path) -> None:
    _, _, ds = good
    junk = tmp_path / "reads.fa"
    junk.write_bytes(b"\x1f\x8b\x08garbage")
    for source in (junk, tmp_path / "absent.fa"):
        res = _verify(ds, source)
        assert res.returncode == 1 and "Traceback" not in res.stderr + res.stdout, res.stdout + res.stderr
        assert "FAILED" in res.stdout


# FASTA text the converter and pyfastx read alike (ASCII; bad records of every kind).
_hdr = st.one_of(
    st.builds(lambda c, m: f"lbl|{c}||{m}|r/1", st.sampled_from(["7", "42", "8"]), st.integers(0, 200)),
    st.text("abc|/12 ", max_size=12),
)
# (pyfastx and the converter differ on degenerate records such as a lone '>' with no
# sequence, so every generated record has at least one sequence character.)
_seq = st.one_of(st.text("ACGTNacgtRYK", min_size=1, max_size=150), st.text("ACGT1-*", min_size=1, max_size=20))
EXAMPLES = int(os.environ.get("READSHARD_FUZZ_EXAMPLES", "25"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=st.lists(st.tuples(_hdr, _seq, st.sampled_from(["\n", "\r\n"]), st.sampled_from([0, 7])), min_size=1,
                     max_size=15))
def test_verify_source_agrees_with_converter(recs) -> None:
    lines = []
    for h, s, eol, width in recs:
        body = eol.join(s[i : i + width] for i in range(0, len(s), width)) if width and s else s
        lines.append(f">{h}{eol}{body}{eol}")
    d = Path(tempfile.mkdtemp())
    try:
        src = d / "in.fa"
        src.write_text("".join(lines), newline="")
        try:
            convert(ConvertOptions(inputs=[str(src)], out=str(d / "ds"), mapping=str(DATA / "mapping.tsv"),
                                   reads_per_shard=4, tokenizer="char", max_length=256, progress=False))
        except Exception:  # noqa: BLE001 - typed errors are the fuzz test's business
            return
        r = verify_dataset(d / "ds", sources=[str(src)], sample=1.0)
        assert r["ok"], r["problems"]
    finally:
        shutil.rmtree(d, ignore_errors=True)
