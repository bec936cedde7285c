"""--max-minutes drives the learning-rate decay: a run cut by time ends at the floor of its
schedule, whatever the machine's load (the clock is injected: no real-time waits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import train.loop
from _train_helpers import TINIEST
from train.config import config_from_dict
from train.loop import TimeBudget, lr_factor, run

SPLIT = dict(num_classes=2, train_per_class=64, val_per_class=8, max_length=24)  # conftest's split fixture builds it


class FakeClock:
    """A clock that moves ``tick`` seconds each time it is read."""

    def __init__(self, tick: float = 1.0) -> None:
        self.now = 1000.0
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def schedule(budget: TimeBudget, steps: int, *, warmup: int = 2, total: int = 1000, first: int = 0) -> list[float]:
    out = []
    for s in range(first, first + steps):
        budget.measure(s, warmup)
        out.append(budget.factor(s, warmup_steps=warmup, total_steps=total, min_ratio=0.1))
    return out


def test_time_budget_reaches_the_floor_at_the_deadline() -> None:
    clock = FakeClock()
    budget = TimeBudget(clock.now + 20, clock=clock)
    f = schedule(budget, 30)
    assert f[:2] == [0.5, 1.0]  # warmup is by steps
    assert all(a >= b for a, b in zip(f[2:], f[3:]))  # then a monotone decay
    # read at 999 + s: step 20 (1019) is the last before the deadline (1020), so it is at the floor
    assert f[19] > 0.1 + 1e-6 and f[20] == pytest.approx(0.1) and f[-1] == pytest.approx(0.1)
    assert budget.driven_by == "time" and budget.progress == 1.0


def test_without_deadline_it_is_the_step_schedule() -> None:
    budget = TimeBudget(None, clock=FakeClock())
    assert schedule(budget, 50, total=40) == [lr_factor(s, warmup_steps=2, total_steps=40, min_ratio=0.1)
                                              for s in range(50)]
    assert budget.driven_by == "steps"
    far = TimeBudget(1e12, clock=FakeClock())  # a budget the steps finish well within
    assert schedule(far, 50, total=40) == pytest.approx(schedule(TimeBudget(None, clock=FakeClock()), 50, total=40))
    assert far.driven_by == "steps"


def test_resume_continues_the_decay_without_a_jump() -> None:
    clock = FakeClock()
    first = TimeBudget(clock.now + 20, clock=clock)
    before = schedule(first, 10)[-1]
    state = json.loads(json.dumps(first.state_dict()))  # it goes through the checkpoint
    assert 0 < state["progress"] < 1
    resumed = TimeBudget(clock.now + 20, clock=clock)  # a new process, a new budget
    resumed.load_state_dict(state)
    after = [resumed.factor(10, warmup_steps=2, total_steps=1000, min_ratio=0.1)] + schedule(resumed, 40, first=11)
    assert after[0] == pytest.approx(before)  # where it stopped, not back at the peak
    assert all(a >= b - 1e-12 for a, b in zip(after, after[1:]))
    assert after[-1] == pytest.approx(0.1)  # and the rest of the decay fits the new budget


def test_run_cut_by_time_ends_at_the_floor(split: tuple[Path, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train.loop, "_clock", FakeClock(1.0))  # 1 s per reading: ~2 s per step
    cfg = config_from_dict({
        "data": {"train": str(split[0]), "val": str(split[1]), "num_workers": 0},
        "model": {"arch": "llama", "config": TINIEST},
        "optim": {"lr": 1e-2, "warmup_steps": 3, "min_lr_ratio": 0.05},
        "train": {"batch_size": 16, "max_steps": 10_000, "max_minutes": 0.5, "log_every": 1, "threads": 1,
                  "progress": False, "baseline": False},
        "out": str(tmp_path),
    })
    run(cfg)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    end = next(r for r in log if r.get("event") == "schedule_end")
    assert end["stopped_by"] == "max_minutes" and end["driven_by"] == "time" and end["progress"] == 1.0
    assert 5 < len(steps) < 30  # cut by time, far from max_steps
    assert steps[-1]["lr"] == pytest.approx(1e-2 * 0.05)  # the step that crossed the deadline: at the floor
    assert steps[-1]["schedule"] == "time"
    assert any(r.get("event") == "schedule" and r["driven_by"] == "time" for r in log)
