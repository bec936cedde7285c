"""``python -m loaders.bench --json --quick``: runs end to end and reports every competitor.

No timing assertions (speed targets are checked by the benchmark itself, not by tests).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # one whole quick bench (all competitors) for the module

COMPETITORS = (
    "readshard",
    "readshard_batched",
    "readshard_compressed",
    "readshard_dataloader_2_workers",
    "numpy_memmap_limit",
    "hf_datasets",
    "pyfastx_on_the_fly",
    "pyfaidx_on_the_fly",
)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("datasets", reason="the bench extra (pip install .[bench]) is not installed")
    pytest.importorskip("pyfaidx", reason="the bench extra (pip install .[bench]) is not installed")
    cache = tmp_path_factory.mktemp("bench-cache")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "loaders.bench", "--json", "--quick", "--cache", str(cache), "--model-rate", "1e12"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.parametrize("name", COMPETITORS)
def test_every_competitor_has_a_positive_rate(quick_report: dict, name: str) -> None:
    assert _positive(quick_report["samples_per_s"][name])
    assert _positive(quick_report["peak_rss_mb"][name])
    assert _positive(quick_report["ratio_to_numpy_memmap_limit"][name])


def test_ratios_are_consistent_with_rates(quick_report: dict) -> None:
    sps = quick_report["samples_per_s"]
    limit = sps["numpy_memmap_limit"]
    # Empty tables would make the loops below check nothing.
    assert quick_report["ratio_to_numpy_memmap_limit"], "the ratio table is empty"
    assert quick_report["readshard_batched_speedup_over"], "the speed-up table is empty"
    for name, ratio in quick_report["ratio_to_numpy_memmap_limit"].items():
        assert ratio == pytest.approx(sps[name] / limit, rel=1e-2, abs=1e-4)  # both rounded in the JSON
    for name, speedup in quick_report["readshard_batched_speedup_over"].items():
        assert speedup == pytest.approx(sps["readshard_batched"] / sps[name], rel=1e-2, abs=1e-3)


def test_targets_machine_and_notes(quick_report: dict) -> None:
    targets = quick_report["targets"]
    for key in ("batched_vs_memmap_limit", "batched_vs_hf_datasets", "batched_vs_pyfastx", "dataloader_2_workers"):
        assert isinstance(targets[key]["pass"], bool)
        assert _positive(targets[key]["value"])
    machine = quick_report["machine"]
    assert machine["cpu_count"] >= 1 and machine["ram_gib"] > 0
    assert any("right before" in n for n in quick_report["notes"])
    assert set(quick_report["skipped"]) == {"mosaicml_streaming"}  # the bench extra is installed here
    assert _positive(quick_report["details"]["pyfastx_on_the_fly"]["index_build_s"])


def test_shuffle_quality_and_headroom(quick_report: dict) -> None:
    q = quick_report["shuffle_quality"]["readshard_compressed_chunk_shuffle"]
    assert 0 < q["ratio"] <= 1.05 and _positive(q["full_shuffle_entropy"])
    head = quick_report["headroom"]
    # a model that trains 10^12 reads/s is always starved: the warning must fire
    assert head["warn"] is True and head["headroom"] < 1.5
