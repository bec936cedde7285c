"""Indices: unsigned values past int64 and out-of-range values raise, never wrap to other rows."""

from __future__ import annotations

import numpy as np
import pytest

from _loader_helpers import build_dataset
from loaders import ShardDataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return ShardDataset(build_dataset(tmp_path_factory.mktemp("idx") / "ds", shard_sizes=(30, 20), seed=2).path)


BAD_BATCHES = [
    pytest.param(np.array([2**64 - 1], dtype=np.uint64), IndexError, id="uint64-max"),  # was row -1
    pytest.param(np.array([2**63], dtype=np.uint64), IndexError, id="uint64-2^63"),
    pytest.param(np.array([50]), IndexError, id="len"),
    pytest.param(np.array([-51]), IndexError, id="-len-1"),
    pytest.param([2**70], (IndexError, TypeError, OverflowError), id="python-big-int"),
    pytest.param(np.array([1.0]), TypeError, id="float"),
    pytest.param(np.array([True]), TypeError, id="bool"),
]


@pytest.mark.parametrize("indices, error", BAD_BATCHES)
def test_bad_batch_indices_raise(ds, indices, error):
    with pytest.raises(error):
        ds.__getitems__(indices)


@pytest.mark.parametrize("index, error", [
    (np.uint64(2**64 - 1), IndexError), (50, IndexError), (-51, IndexError), (2**70, IndexError),
    (True, TypeError), (1.0, TypeError),
])
def test_bad_item_index_raises(ds, index, error):
    with pytest.raises(error):
        ds[index]


def test_good_unsigned_and_negative(ds):
    a = ds.__getitems__(np.array([49, 0], dtype=np.uint64))
    b = ds.__getitems__(np.array([-1, -50]))
    np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    assert ds[np.uint64(49)]["labels"] == ds[-1]["labels"]
