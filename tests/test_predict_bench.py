"""``benchmarks/predict_bench.py`` on a real tiny run: both rates measured, the child's own peak RSS."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import predict_bench  # noqa: E402


@pytest.mark.slow
def test_bench_rows(tiny_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pb"
    assert predict_bench.main([str(tiny_run["run"]), "--reads", "400", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["reads"] for r in rows] == [400]
    for r in rows:
        assert r["reads_per_s"] > 0 and r["forward_reads_per_s"] > 0
        assert r["ratio"] == pytest.approx(r["reads_per_s"] / r["forward_reads_per_s"])
        # a python process with torch and the model: far above this bench's own few MB, far below a GB
        assert 100 < r["peak_rss_mb"] < 2000
        report = json.loads((out / f"predict_{r['reads']}" / "report.json").read_text())
        assert report["reads_in"] == r["reads"]
    assert "400 reads" in capsys.readouterr().out


def test_reads_are_unlabelled_150bp(tmp_path: Path) -> None:
    path = tmp_path / "r.fa"
    predict_bench.write_reads(path, 30)
    lines = path.read_bytes().split(b"\n")
    assert lines[0] == b">r0/1" and lines[58] == b">r29/1" and lines[-1] == b""
    assert all(len(s) == 150 and set(s) <= set(b"ACGTN") for s in lines[1::2])
