"""Two converters on one --out: one wins, the other stops with a clear message, nothing mixes.

(tests/test_resume.py covers a second converter started with --resume while one runs.)
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import convert_cli, converted_reads, start_convert
from convert import ConvertOptions, convert
import shards as fmt
from convert import pipeline
from convert.pipeline import ConvertError, staging_dir

RPS = "250"
CLEAR = ("another converter", "already exists")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return converted_reads(tmp_path_factory.mktemp("conc"), n_per_class=500, classes=4, reads_per_shard=RPS)


def _popen(inp: Path, mapping: Path, out: Path, jobs: str) -> subprocess.Popen:
    return start_convert(inp, mapping, out, "--jobs", jobs, reads_per_shard=RPS, text=True)


def _same_as_ref(out: Path, ref: Path) -> None:
    assert (out / "manifest.json").read_bytes() == (ref / "manifest.json").read_bytes()
    for e in json.loads((ref / "manifest.json").read_text())["shards"]:
        assert fmt.file_sha256(out / e["file"]) == e["sha256"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())


@pytest.mark.slow  # two converter processes per case
@pytest.mark.parametrize("stagger_s, jobs", [(0.0, "1"), (0.0, "2"), (0.4, "1")])
def test_two_converters_started_together(data, tmp_path: Path, stagger_s: float, jobs: str) -> None:
    inp, mapping, ref = data
    out = tmp_path / "out"
    a = _popen(inp, mapping, out, jobs)
    time.sleep(stagger_s)
    b = _popen(inp, mapping, out, jobs)
    results = [(p.wait(timeout=180), *p.communicate()) for p in (a, b)]
    rcs = sorted(r[0] for r in results)
    assert rcs == [0, 2], results
    loser_err = next(err for rc, _, err in results if rc == 2)
    assert "Traceback" not in loser_err and len(loser_err.strip().splitlines()) == 1, loser_err
    assert any(m in loser_err for m in CLEAR), loser_err
    assert "unfinished" not in loser_err  # the other one was running, not abandoned
    _same_as_ref(out, ref)
    assert not staging_dir(out).exists()


def test_running_converter_is_not_called_unfinished(data, tmp_path: Path) -> None:
    """A staging dir whose lock is held means 'running', whatever flags the second one has."""
    inp, mapping, _ = data
    out = tmp_path / "out"
    st = staging_dir(out)
    st.mkdir(parents=True)
    fd = os.open(st / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"424242")
        for extra in ([], ["--resume"]):
            res = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress", *extra)
            assert res.returncode == 2 and "another converter (pid 424242)" in res.stderr, res.stderr
    finally:
        os.close(fd)
    assert not out.exists()


def test_output_published_by_another_while_starting(data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The winner publishes --out after the loser checked it: the loser must not replace it."""
    inp, mapping, ref = data
    out = tmp_path / "out"
    real = pipeline.hold_staging

    def slow_start(staging):  # runs after the loser's first look at --out, before its lock
        monkeypatch.setattr(pipeline, "hold_staging", real)
        convert(ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), reads_per_shard=int(RPS),
                               progress=False))
        return real(staging)

    monkeypatch.setattr(pipeline, "hold_staging", slow_start)
    with pytest.raises(ConvertError, match="already exists"):
        convert(ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), reads_per_shard=int(RPS),
                               progress=False))
    _same_as_ref(out, ref)
    assert not staging_dir(out).exists()
