"""`make train TRAIN_FLAGS=...` passes training flags through (the Makefile's own recipe, run for real)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _train_helpers import build_split

REPO = Path(__file__).resolve().parents[1]
TINY = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_train_passes_train_flags(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    train, val = build_split(sample, num_classes=3, train_per_class=40, val_per_class=10)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({
        "data": {"train": str(train), "val": str(val), "num_workers": 0},
        "model": {"arch": "llama", "config": TINY},
        "train": {"batch_size": 8, "max_steps": 50, "progress": False, "baseline": False, "threads": 1},
        "out": str(tmp_path / "from-config"),
    }))
    stamp = tmp_path / "venv-stamp"  # make's install stamp, newer than pyproject.toml
    stamp.mkdir()
    (stamp / ".installed").touch()
    out = tmp_path / "from-flags"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        ["make", "-C", str(REPO), "train", f"PY={sys.executable}", f"VENV={stamp}", f"SAMPLE={sample}",
         f"CONFIG={cfg}", f"TRAIN_FLAGS=--max-steps 2 --out {out}"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    assert not (tmp_path / "from-config").exists()
