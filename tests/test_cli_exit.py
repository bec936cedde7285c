"""How ``python -m convert`` ends: ``convert.cli.exit_now`` skips the interpreter's teardown
only when nothing is lost by it.

Each case runs a real converter process with an ``atexit`` hook that prints a marker: the
hook runs on a normal exit and not after ``os._exit``. Output goes to pipes with
``PYTHONUNBUFFERED`` unset, so a summary line that was not flushed before ``os._exit`` would
be missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # real converter processes

_MARK = "normal-interpreter-exit"
# The converter's own entry point, with a hook that only a normal exit runs.
_CHILD = (
    "import atexit, sys\n"
    f"atexit.register(lambda: print({_MARK!r}, file=sys.stderr))\n"
    "from convert.cli import run\n"
    "sys.argv[0] = 'convert'\n"
    "run()\n"
)


def _run(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", _CHILD, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=env)


def test_a_threads_run_skips_teardown_and_keeps_its_output(reads: tuple[Path, Path], tmp_path: Path) -> None:
    fa, mapping = reads
    out = tmp_path / "out"
    r = _run(fa, "--mapping", mapping, "--out", out, "--jobs", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("readshard: ") and r.stdout.endswith("\n")  # flushed before os._exit
    assert _MARK not in r.stderr
    assert (out / "manifest.json").is_file()


def test_an_error_keeps_its_exit_code_and_message(reads: tuple[Path, Path], tmp_path: Path) -> None:
    fa, _ = reads
    r = _run(fa, "--mapping", tmp_path / "missing.tsv", "--out", tmp_path / "out", "--no-progress")
    assert r.returncode != 0
    assert "missing.tsv" in r.stderr
    assert _MARK not in r.stderr


def test_a_run_with_worker_processes_exits_normally(reads: tuple[Path, Path], tmp_path: Path) -> None:
    # The process pool outlives the conversion; its own exit hooks must run to shut it down.
    fa, mapping = reads
    r = _run(fa, "--mapping", mapping, "--out", tmp_path / "out", "--jobs", "2", "--parallel", "processes",
             "--reads-per-shard", "100", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("readshard: ")
    assert _MARK in r.stderr


def test_a_closed_stdout_falls_back_to_the_normal_exit(reads: tuple[Path, Path], tmp_path: Path) -> None:
    fa, mapping = reads
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-c", _CHILD, str(fa), "--mapping", str(mapping), "--out", str(tmp_path / "out"),
           "--no-progress"]
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as p:
        p.stdout.close()  # the reader went away (``... | head -0``)
        err = p.stderr.read()
        rc = p.wait(timeout=300)
    # As without exit_now: the normal exit reports the failed flush (CPython exits with 120).
    assert _MARK in err and "BrokenPipeError" in err and rc != 0
    assert (tmp_path / "out" / "manifest.json").is_file()  # the dataset itself was published
