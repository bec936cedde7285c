"""Metrics from the confusion matrix, checked against hand-computed values; JSON and PNG output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.metrics import (confusion_matrix, format_per_class_table, metrics_from_confusion, per_class_table,
                           plot_confusion, write_json)


def test_confusion_rows_are_true_labels() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_accuracy_macro_f1_per_class_by_hand() -> None:
    cm = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    m = metrics_from_confusion(cm)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # class 0: P 1/2 R 1/2 F1 1/2; class 1: P 1/2 R 1 F1 2/3; class 2: P 1 R 2/3 F1 4/5
    assert m["f1"] == pytest.approx([0.5, 2 / 3, 0.8])
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert m["recall"] == pytest.approx([0.5, 1.0, 2 / 3])
    assert m["support"] == [2, 1, 3]


@pytest.mark.parametrize(
    "cm, acc, f1",
    [
        (np.zeros((3, 3), dtype=int), 0.0, 0.0),  # no reads
        (np.diag([5, 0, 2]), 1.0, 1.0),  # a class without val reads is left out of the macro average
        (np.array([[0, 3], [0, 3]]), 0.5, (0 + 2 * 0.5 * 1 / 1.5) / 2),  # a class never predicted
    ],
)
def test_edge_cases(cm: np.ndarray, acc: float, f1: float) -> None:
    m = metrics_from_confusion(cm)
    assert m["accuracy"] == pytest.approx(acc)
    assert m["macro_f1"] == pytest.approx(f1)


def test_table_json_and_png(tmp_path: Path) -> None:
    cm = np.array([[3, 1], [0, 4]])
    rows = per_class_table(cm, ["a", "b"])
    assert [r["accuracy"] for r in rows] == pytest.approx([0.75, 1.0])
    assert "b" in format_per_class_table(rows)
    write_json(tmp_path / "m.json", {"rows": rows})
    assert json.loads((tmp_path / "m.json").read_text())["rows"][0]["name"] == "a"
    plot_confusion(cm, ["a", "b"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
