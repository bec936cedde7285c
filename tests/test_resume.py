"""Interrupted conversions: kill -9, then --resume gives the same bytes; settings and locks."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from conftest import convert_cli, kill_group, shard_hashes as _hashes, start_convert as _start, wait_for_shards, write_reads
from convert.pipeline import staging_dir


@pytest.mark.slow  # killed converter processes
@pytest.mark.parametrize("jobs, parallel, wait_shards", [("1", "auto", 3), ("2", "processes", 5), ("2", "threads", 5)])
def test_kill_then_resume_gives_same_bytes(
    big_converted: tuple[Path, Path, Path], tmp_path: Path, jobs: str, parallel: str, wait_shards: int
) -> None:
    inp, mapping, ref = big_converted
    out = tmp_path / "out"
    proc = _start(inp, mapping, out, "--jobs", jobs, "--parallel", parallel)
    staging = staging_dir(out)
    wait_for_shards(staging, wait_shards, proc, timeout=60)
    if not kill_group(proc) and proc.returncode == 0:
        pytest.skip("the conversion finished before it was killed (a loaded machine): nothing to resume")
    assert not out.exists(), "nothing may be published by an interrupted run"
    assert 0 < len(list(staging.glob("shard-*.h5"))) < 20
    kept = {p.name: p.stat().st_mtime_ns for p in staging.glob("shard-*.h5")}
    # Without --resume the unfinished conversion is not silently discarded.
    res = convert_cli(inp, "--mapping", mapping, "--out", out, "--reads-per-shard", "500")
    assert res.returncode == 2 and "--resume" in res.stderr
    res = convert_cli(inp, "--mapping", mapping, "--out", out, "--reads-per-shard", "500", "--resume", "--jobs", jobs, "--no-progress")
    assert res.returncode == 0, res.stderr
    assert _hashes(out) == _hashes(ref)
    assert (out / "manifest.json").read_bytes() == (ref / "manifest.json").read_bytes()
    assert (out / "quarantine.fa").read_bytes() == (ref / "quarantine.fa").read_bytes()
    # verified shards were kept, not rewritten
    unit_records_kept = [n for n, t in kept.items() if (out / n).stat().st_mtime_ns == t]
    assert len(unit_records_kept) >= 1
    assert not staging.exists()


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    # 2,000 reads in 20 shards of 100: killed after its first shard, the run is mid-way.
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=500)
    out = tmp_path / "out"
    proc = _start(inp, mapping, out, reads_per_shard=100)
    staging = staging_dir(out)
    wait_for_shards(staging, 1, proc, timeout=60)
    if not kill_group(proc) and proc.returncode == 0:
        pytest.skip("the conversion finished before it was killed (a loaded machine): nothing to resume")
    assert not out.exists() and (staging / "plan.json").is_file(), "the run finished before it was killed"
    res = convert_cli(inp, "--mapping", mapping, "--out", out, "--reads-per-shard", "100", "--resume", "--tokenizer", "char")
    assert res.returncode == 2 and "other settings" in res.stderr and "tokenizer" in res.stderr
    res = convert_cli(inp, "--mapping", mapping, "--out", out, "--reads-per-shard", "100", "--overwrite", "--tokenizer", "char", "--no-progress")
    assert res.returncode == 0, res.stderr


@pytest.mark.slow  # a converter process running beside
def test_second_converter_is_locked_out(big_converted: tuple[Path, Path, Path], tmp_path: Path) -> None:
    inp, mapping, ref = big_converted
    out = tmp_path / "out"
    proc = _start(inp, mapping, out)
    staging = staging_dir(out)
    deadline = time.time() + 60
    while time.time() < deadline and not (staging / ".lock").exists():
        time.sleep(0.01)
    res = convert_cli(inp, "--mapping", mapping, "--out", out, "--reads-per-shard", "500", "--resume")
    first_rc = proc.wait(timeout=120)
    assert res.returncode == 2 and "another converter" in res.stderr, res.stderr
    assert first_rc == 0
    assert _hashes(out) == _hashes(ref)


@pytest.mark.slow  # interrupted converter processes
@pytest.mark.parametrize("parallel", ["threads", "processes"])
def test_ctrl_c_stops_cleanly_then_resume_gives_same_bytes(
    big_converted: tuple[Path, Path, Path], tmp_path: Path, parallel: str
) -> None:
    """SIGINT (Ctrl-C) mid-run: exit 130 with one line and no traceback, nothing published;
    ``--resume`` then gives the reference bytes."""
    inp, mapping, ref = big_converted
    out = tmp_path / "out"
    proc = _start(inp, mapping, out, "--jobs", "2", "--parallel", parallel)
    staging = staging_dir(out)
    wait_for_shards(staging, 3, proc, timeout=60)
    proc.send_signal(signal.SIGINT)  # the parent only, as a terminal's Ctrl-C reaches the foreground job
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    if proc.returncode == 0:
        pytest.skip("the conversion finished before the signal landed")
    assert proc.returncode == 130, err
    assert "interrupted: nothing was published; rerun with --resume" in err and "Traceback" not in err, err
    assert not out.exists()
    res = convert_cli(inp, "--mapping", mapping, "--out", out, "--reads-per-shard", "500", "--resume", "--jobs", "2",
                      "--no-progress")
    assert res.returncode == 0, res.stderr
    assert _hashes(out) == _hashes(ref)
    assert (out / "manifest.json").read_bytes() == (ref / "manifest.json").read_bytes()
