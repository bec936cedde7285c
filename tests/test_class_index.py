"""The per-shard class index (format.build_class_index): a stable sort of the rows by label."""

from __future__ import annotations

import numpy as np
import pytest

from shards import build_class_index


@pytest.mark.parametrize(
    "num_classes, n",
    [(1, 0), (1, 5), (25, 65536), (3507, 10000), (65536, 5000), (70000, 5000)],
)
def test_rows_are_the_stable_order_of_the_labels(num_classes: int, n: int) -> None:
    labels = np.random.default_rng(n).integers(0, num_classes, n).astype(np.int32)
    offsets, rows = build_class_index(labels, num_classes)
    assert rows.dtype == np.int32 and offsets.shape == (num_classes + 1,)
    np.testing.assert_array_equal(rows, np.argsort(labels.astype(np.int64), kind="stable"))
    np.testing.assert_array_equal(np.diff(offsets), np.bincount(labels, minlength=num_classes))
    for c in np.unique(labels)[:50]:  # each class's rows, in row order
        got = rows[offsets[c] : offsets[c + 1]]
        np.testing.assert_array_equal(got, np.flatnonzero(labels == c))
