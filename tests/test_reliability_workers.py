"""A DataLoader worker killed mid-epoch surfaces as an error in the training process, not a hang.

The epoch runs in a child process under a hard timeout, so a hang fails the test instead of
stalling CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, write_reads
from convert import ConvertOptions, convert

HARD_TIMEOUT_S = 120
# What torch raises in the main process when a worker dies. Usually RuntimeError ("DataLoader
# worker (pid N) is killed by signal" / "exited unexpectedly"); under spawn, when the worker
# dies while the main process is receiving a batch (tensors travel as shared-memory handles
# served by the worker), the receive itself fails first: EOFError or ConnectionResetError.
SURFACED = {"RuntimeError", "EOFError", "ConnectionResetError", "ConnectionRefusedError", "BrokenPipeError"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("workers")
    inp, mapping = write_reads(d / "in" / "r.fa", n_per_class=300, classes=4)
    convert(ConvertOptions(inputs=[str(inp)], out=str(d / "ds"), mapping=str(mapping), reads_per_shard=200,
                           progress=False))
    return d / "ds"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_killed_worker_raises_in_main_process(dataset: Path, method: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "_reliab_loader_child.py"), str(dataset), method],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=HARD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the DataLoader hung for {HARD_TIMEOUT_S} s after a worker was killed")
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["killed"], result
    assert result["errors"] and set(result["errors"]) <= SURFACED, result
    for name, message in zip(result["errors"], result["messages"]):
        if name == "RuntimeError":
            assert str(result["killed"]) in message and "DataLoader worker" in message, result
    assert 3 <= result["batches"] < result["total_batches"], result
