"""``train.loop.run(cfg, on_step=...)``: the hook benchmarks time steps with sees every optimizer
step with the loop's own counters, and stopping through it is a clean interruption
(checkpoint, no final evaluation), on the same real shards and DataLoader workers as `make train`."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pytest

from _train_helpers import TINY_1L
from train.config import config_from_dict
from train.loop import CHECKPOINT_NAME, METRICS_NAME, run



def _config(split: tuple[Path, Path], out: Path, *, max_steps: int) -> object:
    return config_from_dict({
        "data": {"train": str(split[0]), "val": str(split[1]), "num_workers": 1},
        "model": {"arch": "llama", "config": TINY_1L},
        "train": {"batch_size": 8, "grad_accum": 2, "max_steps": max_steps, "progress": False, "baseline": False,
                  "threads": 1},
        "out": str(out),
    })


@pytest.mark.parametrize(("stop_at", "max_steps", "steps_seen"), [
    (None, 4, [1, 2, 3, 4]),  # never stops: the run ends normally, with its final evaluation
    (2, 6, [1, 2]),           # stops mid-run: an interruption
])
def test_on_step_sees_every_step_and_can_stop_the_run(split: tuple[Path, Path], tmp_path: Path,
                                                      stop_at: int | None, max_steps: int,
                                                      steps_seen: list[int]) -> None:
    seen: list[tuple[int, dict[str, float]]] = []

    def hook(step: int, counters: Mapping[str, float]) -> bool:
        seen.append((step, dict(counters)))
        if isinstance(counters, dict):
            counters["reads"] = -1  # a copy: the run's own counters must not change
        return step == stop_at

    result = run(_config(split, tmp_path / "out", max_steps=max_steps), on_step=hook)
    assert [s for s, _ in seen] == steps_seen
    assert [c["reads"] for _, c in seen] == [16 * s for s in steps_seen]  # batch 8 x grad_accum 2
    waits = [c["wait_s"] for _, c in seen]
    assert all(w >= 0 for w in waits) and waits == sorted(waits)
    assert (tmp_path / "out" / CHECKPOINT_NAME).is_file()
    if stop_at is None:
        assert result["steps"] == max_steps and result["train_reads_seen"] == 16 * max_steps
        assert (tmp_path / "out" / METRICS_NAME).is_file()
    else:
        assert result == {"interrupted": True, "step": stop_at}
        assert not (tmp_path / "out" / METRICS_NAME).exists()  # no final evaluation
