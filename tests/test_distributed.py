"""Real ``torchrun --nproc_per_node 2`` (gloo): every read exactly once per epoch across ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _loader_helpers import REPO, build_dataset
from loaders import ShuffleSampler
from loaders.sampler import permutation_block

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.slow  # torchrun with two ranks
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed next to the interpreter")
def test_torchrun_two_ranks(tmp_path):
    built = build_dataset(tmp_path / "ds", shard_sizes=(400, 0, 533, 70), seed=23)
    n = len(built)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(REPO / "tests" / "_dist_worker.py"),
           str(built.path), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for epoch in range(2):
        parts = [np.load(out / f"rank{r}-epoch{epoch}.npy") for r in range(2)]
        assert parts[0].size == parts[1].size == -(-n // 2)  # padded to equal counts
        allidx = np.concatenate(parts)
        # every read once, plus the wrap-around padding (n is odd: one read twice)
        np.testing.assert_array_equal(np.unique(allidx), np.arange(n))
        assert allidx.size - n == (-n) % 2
    e0 = np.concatenate([np.load(out / f"rank{r}-epoch0.npy") for r in range(2)])
    e1 = np.concatenate([np.load(out / f"rank{r}-epoch1.npy") for r in range(2)])
    assert not np.array_equal(e0, e1)
    # epoch 2 stopped after 3 batches of 50 per rank; resume elastically on one process
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 2 and state["cursor"] == 3 * 50 * 2
    head = np.concatenate([np.load(out / f"rank{r}-epoch2.npy") for r in range(2)])
    single = ShuffleSampler(n, seed=0)
    single.load_state_dict(state)
    rest = np.array(list(single))
    both = np.concatenate([head, rest])
    assert both.size == n
    np.testing.assert_array_equal(np.sort(both), np.arange(n))
    np.testing.assert_array_equal(rest, permutation_block(n, 21, 2, state["cursor"], n))
