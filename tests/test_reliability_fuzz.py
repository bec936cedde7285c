"""Fuzzed input: random headers, sequences, line endings, gzip fragments and binary noise.

Whatever the bytes, the parser and the converter either produce a reconciled result
(records in = written + skipped, one quarantine line per skipped record) or raise one of
the typed errors (:data:`convert.pipeline.ERRORS`) with a message naming the input file.
Never another exception, never a traceback from the CLI, never a dataset half-published.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _strategies import fasta_records
from conftest import DATA, convert_cli
from convert import ConvertOptions, convert
from convert import fastx
from convert.fastx import InputError, iter_units, parse_unit
from convert.pipeline import ERRORS

MAPPING = DATA / "mapping.tsv"  # class ids 7 and 42
# READSHARD_FUZZ_EXAMPLES=2000 for a deeper hunt; CI keeps it short.
EXAMPLES = int(os.environ.get("READSHARD_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])

# ----------------------------------------------------------------------------- strategies

_digits = st.integers(min_value=0, max_value=10**12).map(str)
_field = st.one_of(_digits, st.just(""), st.text("0123456789abc -|/\t", max_size=6))
_good_header = st.builds(
    lambda cid, tax, rl, name, mate: f"lbl|{cid}|{tax}|{rl}|{name}{mate}",
    st.sampled_from(["7", "42", "7", "42", "8", "0", "99999999999999999999"]),
    st.one_of(st.just(""), st.sampled_from(["11", "0", "2147483647", "2147483648", "99999999999"]), _field),
    st.one_of(st.just(""), _digits),
    st.text("abcXYZ_09.", min_size=0, max_size=8),
    st.sampled_from(["/1", "/2", "", "/0", "/127", "/128", "/300", "/99999999999", "/x"]),
)
_noise_header = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").decode("latin-1"))
_header = st.one_of(_good_header, _good_header, _good_header.map(lambda h: h + " some description"), _noise_header)
_bases = st.text("ACGTNacgtnRYSWKMBDHVU", min_size=0, max_size=200)
_seq = st.one_of(_bases, _bases, st.text("ACGT!1*.- \t\x00é", max_size=40))
_eol = st.sampled_from(["\n", "\r\n"])


def fasta_text() -> st.SearchStrategy[bytes]:
    return fasta_records(_header, _seq, _eol, records=st.integers(0, 12), widths=[0, 0, 7, 60],
                         blanks=["", "", "\n", "\r\n\n"])


@st.composite
def fastq_text(draw) -> bytes:
    out = []
    for _ in range(draw(st.integers(0, 10))):
        seq = draw(_seq).replace("\n", "")
        qual = "I" * (len(seq) + draw(st.sampled_from([0, 0, 0, 1, -1])))
        eol = draw(_eol)
        plus = draw(st.sampled_from(["+", "+", "", "+" + "x"]))
        out.append("@" + draw(_header) + eol + seq + eol + plus + eol + qual + eol + draw(st.sampled_from(["", "", "\n"])))
    return "".join(out).encode("latin-1")


def _gzip(b: bytes) -> bytes:
    return gzip.compress(b, mtime=0)


@st.composite
def input_bytes(draw) -> bytes:
    """Valid records, then maybe noise or gzip fragments appended to or instead of them."""
    body = draw(st.one_of(fasta_text(), fasta_text(), fastq_text()))
    extra = draw(st.sampled_from(["none", "none", "noise", "gzip_of_records", "gzip_garbage", "truncated_gzip"]))
    noise = draw(st.binary(min_size=1, max_size=64))
    frag = {
        "none": b"",
        "noise": noise,
        "gzip_of_records": _gzip(body[: len(body) // 2]),
        "gzip_garbage": _gzip(noise),
        "truncated_gzip": _gzip(body + noise)[: draw(st.integers(1, 40))],
    }[extra]
    how = draw(st.sampled_from(["append", "prepend", "instead", "whole_gzip", "whole_gzip_truncated", "gzip_members"]))
    if how == "append":
        data = body + frag
    elif how == "prepend":
        data = frag + body
    elif how == "instead":
        data = frag or noise
    elif how == "whole_gzip":
        data = _gzip(body + frag)
    elif how == "whole_gzip_truncated":
        z = _gzip(body + frag)
        data = z[: draw(st.integers(0, len(z)))]
    else:  # multi-member gzip (valid): what `cat a.gz b.gz` gives
        data = _gzip(body) + _gzip(draw(fasta_text()))
    return data


# ----------------------------------------------------------------------------- checks


def _typed(exc: BaseException, path: Path) -> None:
    assert isinstance(exc, ERRORS), f"untyped {type(exc).__name__}: {exc}"
    assert path.name in str(exc), f"message does not name the file: {exc}"


@FUZZ
@given(data=input_bytes(), unit=st.sampled_from([1, 2, 5, 1000]), block=st.sampled_from([1, 3, 7, 64]))
def test_parser_never_crashes(tmp_path_factory: pytest.TempPathFactory, data: bytes, unit: int, block: int) -> None:
    """Any bytes: records or an InputError; and the same records however units and reads are cut."""
    path = tmp_path_factory.mktemp("p") / "in.fa"
    path.write_bytes(data)
    results = []
    for rpu, blk in ((unit, block), (10**6, fastx.BLOCK)):
        saved, fastx.BLOCK = fastx.BLOCK, blk  # tiny read blocks: cuts at every byte position
        try:
            recs = [(r.line, r.raw, r.problem, r.seq) for u in iter_units(path, 0, rpu) for r in parse_unit(u)]
            results.append(recs)
        except InputError as exc:
            _typed(exc, path)
            results.append(type(exc))
        finally:
            fastx.BLOCK = saved
    if isinstance(results[1], list):
        for line, raw, problem, seq in results[1]:
            assert problem is not None or seq
    assert results[0] == results[1]


def _check_convert(path: Path, out: Path, **kw) -> None:
    opts = ConvertOptions(inputs=[str(path)], out=str(out), mapping=str(MAPPING), progress=False, **kw)
    try:
        report = convert(opts)
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions occur
        _typed(exc, path)
        assert not out.exists(), "a failed conversion published something"
        return
    assert report["records_in"] == report["written"] + report["skipped"]
    assert report["skipped"] == sum(report["skipped_by_reason"].values())
    q = (out / "quarantine.tsv").read_text().splitlines()
    assert len(q) - 1 == report["skipped"]
    assert (out / "manifest.json").is_file()


def _input(tmp_path_factory: pytest.TempPathFactory, prefix: str, data: bytes) -> Path:
    """``data`` as ``in.fa`` in a new directory (hypothesis examples share the test's fixtures)."""
    path = tmp_path_factory.mktemp(prefix) / "in.fa"
    path.write_bytes(data)
    return path


@FUZZ
@given(data=input_bytes(), rps=st.sampled_from([1, 3, 1000]), tok=st.sampled_from(["char", "metagene-1"]),
       max_length=st.sampled_from(["auto", 16, 256]))
def test_converter_reconciles_or_raises_typed(tmp_path_factory: pytest.TempPathFactory, data: bytes, rps: int,
                                              tok: str, max_length) -> None:
    path = _input(tmp_path_factory, "c", data)
    _check_convert(path, path.parent / "out", reads_per_shard=rps, tokenizer=tok, max_length=max_length)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=input_bytes())
def test_on_bad_record_error_names_file_and_line(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = _input(tmp_path_factory, "e", data)
    d = path.parent
    try:
        report = convert(ConvertOptions(inputs=[str(path)], out=str(d / "out"), mapping=str(MAPPING),
                                        progress=False, tokenizer="char", max_length=64, on_bad_record="error"))
    except Exception as exc:  # noqa: BLE001
        _typed(exc, path)
        if type(exc).__name__ == "BadRecordError":
            assert ", line " in str(exc)
        return
    assert report["skipped"] == 0


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=input_bytes())
def test_cli_never_prints_a_traceback(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = _input(tmp_path_factory, "cli", data)
    d = path.parent
    res = convert_cli(path, "--mapping", MAPPING, "--out", d / "out", "--jobs", "2", "--reads-per-shard", "3",
                      "--tokenizer", "char", "--max-length", "64", "--no-progress")
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode in (0, 2), res.stderr
    if res.returncode == 2:
        assert "in.fa" in res.stderr and not (d / "out").exists()


# Explicit cases the strategies reach only by chance.
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b">lbl|7|99999999999|40|a/1\nACGT\n", id="tax_id_over_int32"),
        pytest.param(b">lbl|7|11|40|a/300\nACGT\n", id="mate_over_int8"),
        pytest.param(b">lbl|7|11|40|a/1\nACGT\n" + _gzip(b">lbl|7|11|40|b/1\nACGT\n"), id="gzip_appended_to_text"),
        pytest.param(_gzip(b">lbl|7|11|40|a/1\nACGT\n") + b"\x00garbage", id="garbage_after_gzip"),
        pytest.param(_gzip(b">lbl|7|11|4|a/1\nACGT\n")[:-3], id="gzip_cut_in_trailer"),
        pytest.param(zlib.compress(b">lbl|7|11|4|a/1\nACGT\n"), id="zlib_not_gzip"),
        pytest.param(b"\r\n\r\n>lbl|7|11|4|a/1\r\nAC\r\nGT\r\n\r\n>lbl|42||4|b/2\rACGT", id="crlf_blank_lone_cr"),
        pytest.param(b"@lbl|7|11|4|a/1\nACGT\n+\nIII\n@lbl|7|11|4|b/1\nACGT\n", id="fastq_short_qual_and_cut"),
        pytest.param(b">lbl|7|11|4|a/1\nACGT\n>" , id="lone_gt_at_end"),
        pytest.param(b">\xff\xfe|7|\n\x80ACGT\n", id="non_utf8"),
    ],
)
def test_known_edge_inputs(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "in.fa"
    path.write_bytes(data)
    _check_convert(path, tmp_path / "out", reads_per_shard=1, tokenizer="char", max_length=64)
