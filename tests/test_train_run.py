"""A short real training run (real shards, DataLoader workers, tiny Llama) lowers the loss,
beats chance and writes metrics.json with the model and the 6-mer baseline side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _train_helpers import TINY
from train.config import TrainConfig, config_from_dict
from train.loop import run
from conftest import REPO, train_cli


SPLIT = dict(num_classes=4, train_per_class=300, val_per_class=60)  # conftest's split fixture builds it once


def tiny_config(train: Path, val: Path, out: Path, **train_kw: object) -> TrainConfig:
    return config_from_dict({
        "data": {"train": str(train), "val": str(val), "num_workers": 2},
        "model": {"arch": "llama", "config": TINY},
        "optim": {"lr": 5e-3, "warmup_steps": 5},
        "train": {"batch_size": 32, "max_steps": 60, "eval_every": 30, "log_every": 5, "progress": False,
                  "baseline": False, "threads": 1, **train_kw},
        "out": str(out),
    })


def test_short_run_learns_and_reports(split: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    # 30 steps of 32 (0.8 epoch): the tiny Llama is near 100% on val by then, far past the bars below
    result = run(tiny_config(*split, out, baseline=True, baseline_max_reads=500, max_steps=30, eval_every=15))
    losses = [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses[-1] < 0.5 * losses[0], losses
    assert result["val_accuracy"] > 0.6 > result["chance_accuracy"]  # 4 balanced classes: chance 0.25
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("val_accuracy", "val_macro_f1", "train_reads_per_s", "loader_wait_fraction", "per_class",
                "confusion", "baseline_val_accuracy", "eval_history"):
        assert key in metrics, key
    assert 0 <= metrics["loader_wait_fraction"] < 1 and metrics["train_reads_per_s"] > 0
    assert len(metrics["per_class"]) == 4 and sum(r["support"] for r in metrics["per_class"]) == 240
    assert [h["step"] for h in metrics["eval_history"]] == [15, 30]
    # the baseline is capped: it samples 500 of the 1,200 train reads (all 240 val reads) and says so
    base = metrics["baseline"]
    assert (base["train_reads"], base["train_reads_total"], base["val_reads"], base["val_reads_total"]) == (500, 1200, 240, 240)
    assert "uniform sample" in base["sampling"]
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "checkpoint.pt").is_file()


def test_cli_overrides_and_bad_input(split: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {train: nowhere, val: nowhere, num_workers: 0}\n"
        f"model: {{arch: bert, config: {json.dumps(TINY)}}}\n"
        "train: {batch_size: 16, max_steps: 1000, progress: false, baseline: false, threads: 1}\n"
    )
    train, val = split
    out = tmp_path / "out"
    ok = train_cli("--config", cfg, "--train", train, "--val", val, "--out", out, "--max-steps", "3", cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    # A dataset directory without a manifest: one clear line, exit code 2, no traceback.
    bad = train_cli("--config", cfg, "--out", tmp_path / "o2", cwd=REPO)
    assert bad.returncode == 2 and "manifest.json" in bad.stderr and "Traceback" not in bad.stderr
    big = train_cli("--config", cfg, "--train", train, "--val", val, "--out", tmp_path / "o3", "--batch-size", "100000",
                    cwd=REPO)
    assert big.returncode == 2 and "batch_size" in big.stderr


def test_val_with_other_tokenizer_is_refused(split: tuple[Path, Path], tmp_path: Path) -> None:
    from _train_helpers import convert_reads, write_fasta
    from conftest import make_reads
    from shards import FormatError

    reads, labels = make_reads(4, 10, seed=9)
    other = convert_reads(write_fasta(tmp_path / "r" / "v.fa", reads, labels, 4), tmp_path / "v6",
                          tokenizer="dnabert-6mer", max_length=160)
    with pytest.raises(FormatError, match="tokenized with"):
        run(tiny_config(split[0], other, tmp_path / "out"))


def test_config_tokenizer_mismatch_is_refused(split: tuple[Path, Path], tmp_path: Path) -> None:
    """A config that expects DNABERT-2 tokens refuses METAGENE-1 shards, saying what to do."""
    cfg = tmp_path / "c.yaml"
    train, val = split
    cfg.write_text(
        f"data: {{train: {train}, val: {val}, num_workers: 0, tokenizer: dnabert-2}}\n"
        f"model: {{arch: llama, config: {json.dumps(TINY)}}}\n"
        "train: {batch_size: 16, max_steps: 2, progress: false, baseline: false, threads: 1}\n"
    )
    res = train_cli("--config", cfg, "--out", tmp_path / "o", cwd=REPO)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "metagene-1" in res.stderr and "dnabert-2" in res.stderr and "Re-convert" in res.stderr
    # Refused before any output: the corrected command is not taken for a rerun of this one.
    assert not (tmp_path / "o").exists()
