"""Any number of threads may read one ShardDataset, whatever max_open_shards evicts.

Each case runs in a child process: on a reader that unmaps under another thread's gather
the child dies with SIGSEGV instead of failing an assertion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from _loader_helpers import build_dataset
from conftest import REPO


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    return build_dataset(tmp_path_factory.mktemp("threads") / "ds", shard_sizes=(300, 0, 250, 400, 120, 333), seed=9)


@pytest.mark.slow  # a child process per case
@pytest.mark.parametrize("max_open, threads", [(1, 4), (1, 8), (2, 8), (None, 8)])
def test_threads_with_eviction(built, max_open: int | None, threads: int) -> None:
    cmd = [sys.executable, str(REPO / "tests" / "_threads_child.py"), str(built.path),
           str(max_open or 10_000), str(threads), "300"]
    res = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"},
                         capture_output=True, text=True, timeout=300)
    died = -res.returncode if res.returncode < 0 else None
    assert died is None, f"child killed by {signal.Signals(died).name}: {res.stderr[-2000:]}"
    assert res.returncode == 0 and res.stdout.startswith(f"ok {threads}"), res.stdout + res.stderr[-2000:]
