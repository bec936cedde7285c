"""Per-unit label columns: ``LabelMap.labels_of`` and the unit record's ``taxa``.

Both replaced a per-unit sort (``np.searchsorted`` over the mapping, ``np.unique`` over every
row) with a table lookup and a per-label count; each is checked here against the plain
definition on a table of cases.
"""

from __future__ import annotations

import numpy as np
import pytest

from convert.labels import LabelMap
from convert.unit import _taxa


def _map(class_ids: list[int], tax_ids: list[int]) -> LabelMap:
    return LabelMap(class_ids=class_ids, names=[f"s{c}" for c in class_ids], tax_ids=tax_ids, sha256="0" * 64)


def _taxa_reference(labels: np.ndarray, tax_ids: np.ndarray, lm: LabelMap) -> dict[str, list[int]]:
    """The definition: every distinct (class id, tax id) pair, by class id then tax id."""
    pairs = sorted({(lm.class_ids[int(lab)], int(t)) for lab, t in zip(labels, tax_ids)})
    out: dict[str, list[int]] = {}
    for cid, tax in pairs:
        out.setdefault(str(cid), []).append(tax)
    return out


@pytest.mark.parametrize(
    "class_ids, query, expected",
    [
        ([3, 7, 5], [7, 3, 5, 5], [1, 0, 2, 2]),  # small ids: the dense table
        ([3, 7, 5], [4, 8, -1], [-1, -1, -1]),  # unknown ids, inside and outside the table
        ([3, 2**21, 5], [2**21, 3, 5], [1, 0, 2]),  # an id above the dense range: the search path
        ([2**21, 2**31 - 1], [2**31 - 1, 2**21, 17], [1, 0, -1]),  # only large ids
        ([3, 7], [], []),  # an empty unit
        ([], [1, 2], [-1, -1]),  # an empty mapping
    ],
)
def test_labels_of(class_ids: list[int], query: list[int], expected: list[int]) -> None:
    lm = _map(class_ids, [-1] * len(class_ids))
    got = lm.labels_of(np.asarray(query, dtype=np.int64))
    assert got.dtype == np.int32
    assert got.tolist() == expected
    assert got.tolist() == [lm.label_of.get(c, -1) for c in query]  # the dict the regex path uses


CASES = {
    "header tax equals the mapping's": ([10, 20, 30], [100, 200, 300], [0, 1, 1, 2], [100, 200, 200, 300]),
    "tax absent in mapping and header": ([10, 20], [-1, -1], [0, 1, 0], [-1, -1, -1]),
    "a conflicting header tax": ([10, 20], [100, 200], [0, 0, 1, 1], [100, 999, 200, 7]),
    "header tax where the mapping has none": ([10, 20], [-1, 200], [0, 0, 1], [5, 6, 200]),
    "a label absent from the unit": ([10, 20, 30], [100, 200, 300], [2, 2], [300, 300]),
    "class ids above the dense range": ([2**21, 2**31 - 1], [1, 2**31 - 1], [1, 0, 1], [2**31 - 1, 1, 0]),
    "an empty unit": ([10], [100], [], []),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_taxa_matches_the_definition(case: str) -> None:
    class_ids, map_tax, labels, tax = CASES[case]
    lm = _map(class_ids, map_tax)
    labels_a = np.asarray(labels, dtype=np.int32)
    tax_a = np.asarray(tax, dtype=np.int32)
    got = _taxa(labels_a, tax_a, lm)
    assert got == _taxa_reference(labels_a, tax_a, lm)
    assert list(got) == sorted(got, key=int)  # the unit record's key order: by class id


def test_taxa_random_units() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = int(rng.integers(1, 40))
        class_ids = sorted(rng.choice(10_000, size=c, replace=False).tolist())
        map_tax = rng.integers(-1, 50, size=c).tolist()
        lm = _map(class_ids, map_tax)
        n = int(rng.integers(0, 500))
        labels = rng.integers(0, c, size=n).astype(np.int32)
        own = np.asarray(map_tax, dtype=np.int64)[labels]
        tax = np.where(rng.random(n) < 0.9, own, rng.integers(-1, 60, size=n)).astype(np.int32)
        assert _taxa(labels, tax, lm) == _taxa_reference(labels, tax, lm)
