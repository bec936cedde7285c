"""DDP with real torchrun (2 gloo processes on CPU): the ranks' micro-batches at each step are
exactly the single-process run's batch of twice the size, and the weights end up the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO

TORCHRUN = Path(sys.executable).with_name("torchrun")
STEPS = 6
SPLIT = dict(num_classes=3, train_per_class=100, val_per_class=20)  # conftest's split fixture builds it once


def write_config(path: Path, train: Path, val: Path) -> Path:
    path.write_text(
        f"data: {{train: {train}, val: {val}, num_workers: 1}}\n"
        "model: {arch: llama, config: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, "
        "num_attention_heads: 4}}\n"
        "optim: {lr: 1.0e-3, warmup_steps: 2}\n"
        f"train: {{max_steps: {STEPS}, log_every: 1, seed: 3, log_batches: true, progress: false, "
        "baseline: false, threads: 1}\n"
    )
    return path


@pytest.mark.slow  # torchrun with two gloo ranks
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside the interpreter")
def test_two_gloo_ranks_see_the_single_process_batches(split: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "ddp.yaml", *split)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "train", "--config", str(cfg),
                          "--out", str(tmp_path / "ddp"), "--batch-size", "8"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "train", "--config", str(cfg), "--out", str(tmp_path / "one"),
                             "--batch-size", "16"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]

    def batches(path: Path) -> list[np.ndarray]:
        return [np.array(json.loads(line)["indices"]) for line in path.read_text().splitlines()]

    r0, r1 = batches(tmp_path / "ddp" / "batches-rank0.jsonl"), batches(tmp_path / "ddp" / "batches-rank1.jsonl")
    one = batches(tmp_path / "one" / "batches-rank0.jsonl")
    assert len(r0) == len(r1) == len(one) == STEPS
    for step, (a, b, s) in enumerate(zip(r0, r1, one)):
        assert not set(a.tolist()) & set(b.tolist()), step
        # rank r takes global positions r, r+2, ...: interleaving the ranks gives the global batch
        np.testing.assert_array_equal(np.stack([a, b], axis=1).reshape(-1), s, err_msg=f"step {step}")

    m_ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    m_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert m_ddp["world_size"] == 2 and m_ddp["val_reads"] == m_one["val_reads"] == 60
    assert not (tmp_path / "ddp" / "metrics.json").with_name("batches-rank2.jsonl").exists()
    # rank 0 gathered every rank's val log-probabilities in read order for the calibration
    ev = json.loads((tmp_path / "ddp" / "eval" / "val" / "metrics.json").read_text())
    assert ev["per_read"]["count"] == 60 and ev["per_read"]["accuracy"] == pytest.approx(m_ddp["val_accuracy"])
    assert json.loads((tmp_path / "ddp" / "calibration.json").read_text())["num_reads"] == 60
    # Averaged gradients of 2 x 8 reads = gradient of the 16-read batch: same weights up to rounding.
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-4, msg=name)
