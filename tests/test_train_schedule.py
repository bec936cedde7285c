"""The learning-rate schedule is a pure function of the step: warmup, cosine, floor."""

from __future__ import annotations

import math

import pytest

from train.loop import lr_factor


@pytest.mark.parametrize(
    "step, expected",
    [(0, 0.1), (4, 0.5), (9, 1.0), (10, 1.0), (60, 0.05 + 0.95 * 0.5), (110, 0.05), (500, 0.05)],
)
def test_warmup_then_cosine_to_floor(step: int, expected: float) -> None:
    assert lr_factor(step, warmup_steps=10, total_steps=110, min_ratio=0.05) == pytest.approx(expected)


def test_monotone_decay_after_warmup() -> None:
    vals = [lr_factor(s, warmup_steps=5, total_steps=50, min_ratio=0.0) for s in range(5, 51)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert vals[-1] == pytest.approx(0.0)


def test_no_warmup() -> None:
    assert lr_factor(0, warmup_steps=0, total_steps=10, min_ratio=0.1) == pytest.approx(1.0)
    assert math.isfinite(lr_factor(0, warmup_steps=0, total_steps=0, min_ratio=0.1))
