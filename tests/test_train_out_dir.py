"""`python -m train` never silently replaces an earlier run: an --out that holds anything is
refused (exit 2, one paragraph) unless --resume or --overwrite says what to do with it; and a
run needs both datasets named (no fallback to the sample's val set)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from _train_helpers import TINIEST
from conftest import Ran, run_train, train_cli


def _config(path: Path, train: Path, val: Path | None) -> Path:
    data = {"train": str(train), "num_workers": 0, **({"val": str(val)} if val else {})}
    path.write_text(json.dumps({
        "data": data, "model": {"arch": "llama", "config": TINIEST},
        "train": {"batch_size": 8, "max_steps": 2, "progress": False, "baseline": False, "threads": 1},
    }))  # JSON is YAML
    return path


def _train(*args: str, cwd: Path) -> Ran:
    return train_cli(*args, cwd=cwd)


def _one_paragraph_error(proc: Ran | subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return proc.stderr


@pytest.mark.slow
def test_existing_out_is_refused_without_resume_or_overwrite(split: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = _config(tmp_path / "c.yaml", *split)
    out = tmp_path / "run"
    assert _train("--config", str(cfg), "--out", str(out), cwd=tmp_path).returncode == 0
    ckpt = (out / "checkpoint.pt").read_bytes()
    (out / "notes.txt").write_text("mine")

    # The one real `python -m train` exit-2 process of the suite; the other refusals run in-process.
    err = _one_paragraph_error(run_train("--config", cfg, "--out", out, cwd=tmp_path))
    assert f"--out {out} already exists" in err and "--resume" in err and "--overwrite" in err
    assert (out / "checkpoint.pt").read_bytes() == ckpt  # nothing was touched

    both = _one_paragraph_error(_train("--config", str(cfg), "--out", str(out), "--resume", "--overwrite", cwd=tmp_path))
    assert "pass one of them" in both

    # --overwrite replaces the run's own files (a fresh log), and leaves the user's file alone
    assert _train("--config", str(cfg), "--out", str(out), "--overwrite", "--max-steps", "3", cwd=tmp_path).returncode == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps and set(steps) == {3}  # the first run's step-2 lines are gone
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3


def test_empty_out_dir_is_fine(split: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = _config(tmp_path / "c.yaml", *split)
    (tmp_path / "empty").mkdir()
    proc = _train("--config", str(cfg), "--out", str(tmp_path / "empty"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "empty" / "metrics.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("missing, flag", [("val", "--val"), ("train", "--train")])
def test_a_run_without_a_dataset_is_a_clear_error(split: tuple[Path, Path], tmp_path: Path, missing: str,
                                                  flag: str) -> None:
    train, val = split
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({
        "data": {"num_workers": 0, **({"train": str(train)} if missing == "val" else {"val": str(val)})},
        "model": {"arch": "llama", "config": TINIEST}, "train": {"batch_size": 8, "max_steps": 1},
    }))
    # a sample val set where the old default pointed must not be picked up
    (tmp_path / "data" / "sample").mkdir(parents=True)
    err = _one_paragraph_error(_train("--config", str(cfg), "--out", str(tmp_path / "o"), cwd=tmp_path))
    assert f"data.{missing} is not set" in err and f"{flag} DIR" in err
    assert not (tmp_path / "o").exists()
    # the flag supplies it
    given = {"val": str(val), "train": str(train)}[missing]
    ok = _train("--config", str(cfg), "--out", str(tmp_path / "o"), flag, given, "--no-progress", "--no-baseline",
                "--threads", "1", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
