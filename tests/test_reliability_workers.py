"""A DataLoader worker killed mid-epoch surfaces as an error in the training process, not a hang.

The epoch runs in a child process under a hard timeout, so a hang fails the test instead of
stalling CI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO, converted_reads, run_child

HARD_TIMEOUT_S = 120
# What torch raises in the main process when a worker dies. Usually RuntimeError ("DataLoader
# worker (pid N) is killed by signal" / "exited unexpectedly"); under spawn, when the worker
# dies while the main process is receiving a batch (tensors travel as shared-memory handles
# served by the worker), the receive itself fails first: EOFError or ConnectionResetError.
SURFACED = {"RuntimeError", "EOFError", "ConnectionResetError", "ConnectionRefusedError", "BrokenPipeError"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return converted_reads(tmp_path_factory.mktemp("workers"), n_per_class=300, classes=4, reads_per_shard=200)[2]


@pytest.mark.slow  # a child process with DataLoader workers
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_killed_worker_raises_in_main_process(dataset: Path, method: str) -> None:
    rc, out, err = run_child([sys.executable, REPO / "tests" / "_reliab_loader_child.py", dataset, method],
                             HARD_TIMEOUT_S, "the DataLoader hung after a worker was killed")
    assert rc == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["killed"], result
    assert result["errors"] and set(result["errors"]) <= SURFACED, result
    for name, message in zip(result["errors"], result["messages"]):
        if name == "RuntimeError":
            assert str(result["killed"]) in message and "DataLoader worker" in message, result
    assert 3 <= result["batches"] < result["total_batches"], result
