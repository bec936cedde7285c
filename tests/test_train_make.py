"""`make train TRAIN_FLAGS=...` passes training flags through (the Makefile's own recipe, run for real)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from _train_helpers import TINIEST, build_split
from conftest import make


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_train_passes_train_flags(tmp_path: Path) -> None:
    train, val = build_split(tmp_path / "data" / "sample", num_classes=3, train_per_class=40, val_per_class=10)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({
        "data": {"train": str(train), "val": str(val), "num_workers": 0},
        "model": {"arch": "llama", "config": TINIEST},
        "train": {"batch_size": 8, "max_steps": 50, "progress": False, "baseline": False, "threads": 1},
        "out": str(tmp_path / "from-config"),
    }))
    out = tmp_path / "from-flags"
    proc = make("train", tmp_path, f"CONFIG={cfg}", f"TRAIN_FLAGS=--max-steps 2 --out {out}", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    assert not (tmp_path / "from-config").exists()
