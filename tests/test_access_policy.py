"""Cold-start policy: read shards ahead when the dataset fits in memory, MADV_RANDOM when not."""

from __future__ import annotations

import numpy as np
import pytest

from _loader_helpers import build_dataset
from shards.reader import available_memory, choose_access
from loaders import ShardDataset

GiB = 1 << 30


@pytest.mark.parametrize("total, available, access, expect", [
    (1 * GiB, 8 * GiB, "auto", "sequential"),
    (4 * GiB, 8 * GiB, "auto", "sequential"),   # half the available memory still fits
    (5 * GiB, 8 * GiB, "auto", "random"),
    (100 * GiB, 24 * GiB, "auto", "random"),
    (1, None, "auto", "random"),                # unknown memory: the safe policy
    (100 * GiB, 8 * GiB, "sequential", "sequential"),
    (1, 8 * GiB, "random", "random"),
])
def test_choose_access(total, available, access, expect):
    assert choose_access(total, available, access) == expect


def test_unknown_access_is_refused(tmp_path):
    built = build_dataset(tmp_path / "ds", shard_sizes=(10,), seed=1)
    with pytest.raises(ValueError, match="access must be one of"):
        ShardDataset(built.path, access="psychic")


@pytest.mark.parametrize("access", ["auto", "random", "sequential"])
def test_every_policy_serves_the_same_rows(tmp_path_factory, access):
    built = build_dataset(tmp_path_factory.mktemp("acc") / "ds", shard_sizes=(120, 0, 77), seed=6)
    ds = ShardDataset(built.path, access=access)
    assert ds.access in ("random", "sequential")
    if access == "auto":
        assert ds.access == ("sequential" if available_memory() else "random")
    idx = np.random.default_rng(0).integers(0, len(ds), 64)
    np.testing.assert_array_equal(ds.__getitems__(idx)["input_ids"], built.arrays["input_ids"][idx])
