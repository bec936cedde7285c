"""--resume continues mid-epoch exactly: the same next batches (indices compared exactly) and the
same final weights and losses as an uninterrupted run, including across an epoch boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _train_helpers import TINY
from train.config import apply_overrides, config_from_dict
from train.loop import run

MAX_STEPS = 24  # 600 reads / (16 x 2 per step) = 18.75 steps per epoch: the run crosses an epoch


SPLIT = dict(num_classes=3, train_per_class=200, val_per_class=20)  # conftest's split fixture builds it once


def config(split: tuple[Path, Path], out: Path):
    return config_from_dict({
        "data": {"train": str(split[0]), "val": str(split[1]), "num_workers": 2},
        # dropout on: the resumed run must also restore the RNG to match
        "model": {"arch": "bert", "config": {**TINY, "hidden_dropout_prob": 0.1}},
        "optim": {"lr": 3e-3, "warmup_steps": 3},
        "train": {"batch_size": 16, "grad_accum": 2, "max_steps": MAX_STEPS, "log_every": 1, "seed": 7, "threads": 1,
                  "log_batches": True, "progress": False, "baseline": False},
        "out": str(out),
    })


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(split: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full")
    run(config(split, out))
    return out


@pytest.mark.slow  # three interrupted runs replayed
@pytest.mark.parametrize("stop", [5, 18, 19])
def test_resume_replays_the_uninterrupted_run(split: tuple[Path, Path], full_run: Path, tmp_path: Path,
                                              stop: int) -> None:
    cfg = config(split, tmp_path)
    res = run(apply_overrides(cfg, {"train.stop_at_step": stop}))
    assert res == {"interrupted": True, "step": stop}
    assert not (tmp_path / "metrics.json").exists()
    run(apply_overrides(cfg, {"resume": True}))

    full_batches = read_lines(full_run / "batches-rank0.jsonl")
    resumed_batches = read_lines(tmp_path / "batches-rank0.jsonl")
    assert len(full_batches) == MAX_STEPS * 2
    assert resumed_batches == full_batches  # every micro-batch: same step, epoch and read indices
    assert {b["epoch"] for b in full_batches} == {0, 1}

    def losses(out: Path) -> dict[int, float]:
        return {r["step"]: r["loss"] for r in read_lines(out / "log.jsonl") if "loss" in r}

    full_loss, resumed_loss = losses(full_run), losses(tmp_path)
    for s in range(stop + 1, MAX_STEPS + 1):
        assert resumed_loss[s] == pytest.approx(full_loss[s], rel=1e-4, abs=1e-5), s

    a = torch.load(full_run / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert a["sampler"] == b["sampler"] and a["step"] == b["step"] == MAX_STEPS
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    fa = json.loads((full_run / "metrics.json").read_text())
    fb = json.loads((tmp_path / "metrics.json").read_text())
    assert fa["confusion"] == fb["confusion"]
