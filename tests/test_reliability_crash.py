"""Crash safety: SIGKILL at random moments (whole group, one worker, the parent), then --resume.

The full run (>= 20 trials) is ``python benchmarks/crash_resume.py --trials 20``; here a
handful of trials, one per kill target, on a smaller input.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from conftest import REPO


def _crash_resume():
    spec = importlib.util.spec_from_file_location("crash_resume", REPO / "benchmarks" / "crash_resume.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_random_kills_then_resume_equal_reference(tmp_path: Path) -> None:
    cr = _crash_resume()
    lines: list[str] = []
    summary = cr.run_trials(
        4, seed=3, workdir=tmp_path, fragments_per_species=80, reads_per_shard=250, jobs=2,
        modes=("group", "worker", "parent", "group"), log=lines.append,
    )
    assert summary["all_equal"], "\n".join(lines)
    assert summary["by_mode"] == {"group": 2, "worker": 1, "parent": 1}
    assert summary["reference"]["shards"] >= 10
    for row in summary["results"]:
        assert row["ok"], row


def test_snapshot_phases(tmp_path: Path) -> None:
    """The kill-point classifier reads the staging directory as documented."""
    cr = _crash_resume()
    from convert.pipeline import staging_dir

    out = tmp_path / "out"
    assert cr.snapshot(out)["phase"] == "startup"
    st = staging_dir(out)
    (st / ".units").mkdir(parents=True)
    assert cr.snapshot(out)["phase"] == "setup"
    (st / "plan.json").write_text("{}")
    assert cr.snapshot(out)["phase"] == "parsing"
    (st / ".shard-00000.h5.tmp").write_bytes(b"x")
    assert cr.snapshot(out)["phase"] == "shard_write"
    (st / ".shard-00000.h5.tmp").rename(st / "shard-00000.h5")
    assert cr.snapshot(out) == {"phase": "between_shards", "shards": 1, "tmp": 0, "units": 0}
    (st / "manifest.json").write_text("{}")
    assert cr.snapshot(out)["phase"] == "finalising"
    st.rename(out)
    assert cr.snapshot(out)["phase"] == "published"
