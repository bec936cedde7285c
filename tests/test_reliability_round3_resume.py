"""Issue 21, items 2 and 3: --resume resumes only the same conversion, every interruption has
one working command, publishes interrupted at their worst moments are finished or undone, and
a second run on a busy --out says who holds it.

Real processes where the process is the point (a kill, a lock held by another process, the
exit path of the CLI); the follow-up commands run in-process (``convert_cli``). Every advised
command is taken from the message and run.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, convert_cli, kill_group, run_convert, shard_hashes, wait_for_shards, write_reads
import shards as fmt
from convert.pipeline import staging_dir
from convert.paths import trash_dir

RPS = "500"

# A converter process with a hook: SIGKILL itself right after a publish step, or wait (holding
# its lock) until the test creates the release file.
_CHILD = r"""
import faulthandler, os, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # a hung child shows where it waits
import convert.paths as paths, convert.pipeline as pipeline, convert.repair as repair
from convert.cli import main
point, release, argv = sys.argv[1], sys.argv[2], sys.argv[3:]

def held(real):
    def hooked(*a, **k):
        deadline = time.monotonic() + 120
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
        return real(*a, **k)
    return hooked

if point.startswith("kill-"):
    real_replace = os.replace
    class _Os:
        def __getattr__(self, name):
            return getattr(os, name)
        @staticmethod
        def replace(src, dst):
            real_replace(src, dst)
            if (point == "kill-moved-aside" and str(dst).endswith(".readshard-old")) or (
                    point == "kill-published" and str(src).endswith(".readshard-partial")):
                os.kill(os.getpid(), signal.SIGKILL)
    paths.os = _Os()
elif point == "hold-repair":
    repair._repair_one = held(repair._repair_one)
elif point == "hold-finish":
    pipeline._finish = held(pipeline._finish)
sys.exit(main(argv))
"""


def _child(point: str, release: Path, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, point, str(release), *map(str, args)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs, a reference dataset of them (500 reads per shard) and an older dataset of other settings."""
    d = tmp_path_factory.mktemp("r3")
    inp, mapping = write_reads(d / "in" / "r.fa", n_per_class=1500, classes=4)
    other, _ = write_reads(d / "other" / "o.fa", n_per_class=100, classes=4, seed=7)
    ref, old = d / "ref", d / "old"
    for out, extra in ((ref, ["--reads-per-shard", RPS]), (old, ["--reads-per-shard", "4000"])):
        r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress", *extra)
        assert r.returncode == 0, r.stderr
    return {"inp": inp, "mapping": mapping, "other": other, "ref": ref, "old": old, "dir": d}


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _digests(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _one_paragraph(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _advised(message: str, needle: str) -> list[str]:
    """The arguments of the first `python -m convert ...` command in ``message`` containing ``needle``."""
    for cmd in re.findall(r"`python -m convert ([^`]*)`", message):
        if needle in shlex.split(cmd):
            return shlex.split(cmd)
    raise AssertionError(f"no command with {needle} in: {message}")


def _nothing_left(out: Path) -> None:
    assert not os.path.lexists(staging_dir(out)) and not os.path.lexists(trash_dir(out))
    assert not (out / ".lock").exists()


def _same_as(out: Path, ref: Path) -> None:
    assert shard_hashes(out) == shard_hashes(ref)
    assert (out / "manifest.json").read_bytes() == (ref / "manifest.json").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())


def _communicate(proc: subprocess.Popen, timeout: float) -> str:
    """The child's stderr once it exits; if it has not after ``timeout`` s, fail with its threads' stacks."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        kill_group(proc)
        pytest.fail(f"the child did not exit within {timeout} s; its stacks: {proc.communicate()[1][-4000:]}")


def _wait_lock(staging: Path, proc: subprocess.Popen, what: str = "") -> str:
    """Wait until ``proc`` holds ``staging``'s lock (its pid written) and, if given, ``what`` exists."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            text = (staging / ".lock").read_text()
        except OSError:
            text = ""
        if text.split()[:1] == [str(proc.pid)] and (not what or (staging / what).exists()):
            return text
        time.sleep(0.02)
    raise AssertionError(f"{proc.pid} never held {staging}: {proc.communicate()}")


# ------------------------------------------------------------- 1. --resume: the same conversion only


def test_resume_of_a_complete_dataset_with_other_input_is_refused(data, tmp_path: Path) -> None:
    out = _copy(data["ref"], tmp_path / "ds")
    before = _digests(out)
    r = run_convert(data["other"], "--out", out, "--resume", "--no-progress")
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_paragraph(r.stderr)
    assert "already complete" not in r.stdout
    assert "['o.fa']" in line and "['r.fa']" in line and "--overwrite" in line, line
    assert _digests(out) == before
    _nothing_left(out)


def test_resume_of_a_complete_dataset_names_each_other_setting_and_the_advice_works(data, tmp_path: Path) -> None:
    out = _copy(data["ref"], tmp_path / "ds")
    before = _digests(out)
    args = [data["inp"], "--out", out, "--resume", "--tokenizer", "dnabert-6mer", "--max-length", "100",
            "--reads-per-shard", "50", "--mapping", data["mapping"], "--no-progress"]
    r = convert_cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_paragraph(r.stderr)
    for needle in ("--reads-per-shard 50", "--max-length 100", "--tokenizer dnabert-6mer"):
        assert needle in line, line
    assert _digests(out) == before
    _nothing_left(out)
    advice = _advised(line, "--overwrite")
    assert "--resume" not in advice
    r = convert_cli(*advice)
    assert r.returncode == 0, r.stderr
    manifest = fmt.read_manifest(out)
    assert manifest["source"]["reads_per_shard"] == 50 and manifest["max_length"] == 100
    _nothing_left(out)


@pytest.mark.parametrize(
    "change, needle",
    [("same-name-other-content", "first MiB differs"), ("explicit-default", "--reads-per-shard 65536")],
)
def test_resume_of_a_complete_dataset_refuses_subtle_differences(data, tmp_path: Path, change: str, needle: str) -> None:
    out = _copy(data["ref"], tmp_path / "ds")
    inp, extra = data["inp"], ["--reads-per-shard", RPS]
    if change == "same-name-other-content":
        inp = tmp_path / "x" / "r.fa"
        inp.parent.mkdir()
        text = bytearray(data["inp"].read_bytes())
        text[text.index(b"\n") + 1] = ord("A") if text[text.index(b"\n") + 1] != ord("A") else ord("C")
        inp.write_bytes(bytes(text))  # same name and size, one base differs
    else:
        extra = ["--reads-per-shard", "65536"]  # the default, but given: compared
    r = convert_cli(inp, "--out", out, "--resume", "--no-progress", *extra)
    assert r.returncode == 2 and needle in _one_paragraph(r.stderr), r.stderr
    # The dataset's own inputs and settings still pass.
    r = convert_cli(data["inp"], "--out", out, "--resume", "--no-progress", "--reads-per-shard", RPS,
                    "--mapping", data["mapping"])
    assert r.returncode == 0 and "already complete" in r.stdout, r.stderr


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the converter catches it."""


def _staged(data, out: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> dict[str, int]:
    """An interrupted conversion to ``out`` (all units converted, killed before publishing)."""
    from convert import pipeline

    def killed(*a, **k):
        raise _Killed

    monkeypatch.setattr(pipeline, "_finish", killed)
    with pytest.raises(_Killed):
        convert_cli(data["inp"], "--mapping", data["mapping"], "--out", out, "--reads-per-shard", RPS,
                    "--no-progress", *extra)
    monkeypatch.undo()
    st = staging_dir(out)
    assert (st / "plan.json").is_file()
    return {p.name: p.stat().st_mtime_ns for p in st.glob("shard-*.h5")}


@pytest.mark.parametrize(
    "flags, needles",
    [(["--reads-per-shard", "250"], ["--reads-per-shard is 250 now, 500 in the unfinished"]),
     (["--tokenizer", "char", "--max-length", "64"], ["--tokenizer is 'char' now", "--max-length is 64 now"]),
     (["OTHER"], ["the inputs are", "o.fa"])],
    ids=["shard-size", "tokenizer-and-L", "other-input"],
)
def test_resume_of_a_staged_conversion_with_other_settings_is_refused_first(
        data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], needles: list[str]) -> None:
    out = tmp_path / "ds"
    kept = _staged(data, out, monkeypatch)
    inp = data["other"] if flags == ["OTHER"] else data["inp"]
    flags = [] if flags == ["OTHER"] else flags
    args = [inp, "--mapping", data["mapping"], "--out", out, "--reads-per-shard", RPS, "--no-progress", "--resume",
            *flags]
    r = convert_cli(*args)
    assert r.returncode == 2, r.stderr
    line = _one_paragraph(r.stderr)
    assert all(n in line for n in needles), line
    st = staging_dir(out)
    assert {p.name: p.stat().st_mtime_ns for p in st.glob("shard-*.h5")} == kept  # nothing redone or lost
    assert not out.exists()
    # The same command continues it.
    r = convert_cli(data["inp"], "--mapping", data["mapping"], "--out", out, "--reads-per-shard", RPS,
                    "--no-progress", "--resume")
    assert r.returncode == 0, r.stderr
    _same_as(out, data["ref"])
    _nothing_left(out)


# ------------------------------------------------------------- 2. an interrupted --overwrite resumes


@pytest.mark.slow
def test_killed_overwrite_is_continued_by_the_advised_resume(data, tmp_path: Path) -> None:
    out = _copy(data["old"], tmp_path / "ds")
    old = _digests(out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "convert", str(data["inp"]), "--mapping", str(data["mapping"]), "--out", str(out),
         "--reads-per-shard", RPS, "--jobs", "1", "--overwrite", "--no-progress"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    n = wait_for_shards(staging_dir(out), 3, proc, timeout=60)
    kill_group(proc)
    if not (3 <= n < len(shard_hashes(data["ref"]))) or not (staging_dir(out) / "plan.json").is_file():
        pytest.skip(f"the run was not caught mid-way ({n} shards)")
    assert _digests(out) == old  # the old dataset is untouched until the new one is complete
    # The plain command is told what to run; the advice is run as printed.
    r = convert_cli(data["inp"], "--mapping", data["mapping"], "--out", out, "--reads-per-shard", RPS, "--no-progress")
    assert r.returncode == 2, r.stderr
    advice = _advised(_one_paragraph(r.stderr), "--resume")
    assert "--overwrite" not in advice
    r = convert_cli(*advice)
    assert r.returncode == 0, r.stderr
    _same_as(out, data["ref"])
    _nothing_left(out)


@pytest.mark.slow
def test_ctrl_c_advice_of_an_overwrite_is_a_command_that_works(data, tmp_path: Path) -> None:
    out = _copy(data["old"], tmp_path / "ds")
    release = tmp_path / "release"
    proc = _child("hold-finish", release, data["inp"], "--mapping", data["mapping"], "--out", out,
                  "--reads-per-shard", RPS, "--overwrite", "--no-progress")
    _wait_lock(staging_dir(out), proc, "plan.json")
    wait_for_shards(staging_dir(out), len(shard_hashes(data["ref"])), proc, timeout=60)
    proc.send_signal(signal.SIGINT)
    err = _communicate(proc, 60)
    assert proc.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    r = convert_cli(*_advised(err, "--resume"))
    assert r.returncode == 0, r.stderr
    _same_as(out, data["ref"])
    _nothing_left(out)


# ------------------------------------------------------------- 3. publishes killed at their worst moments


@pytest.mark.parametrize("point", ["kill-moved-aside", "kill-published"])
def test_killed_publish_is_finished_by_resume(data, tmp_path: Path, point: str) -> None:
    out = _copy(data["old"], tmp_path / "ds")
    args = [data["inp"], "--mapping", data["mapping"], "--out", out, "--reads-per-shard", RPS, "--no-progress"]
    proc = _child(point, tmp_path / "unused", *args, "--overwrite", "--jobs", "1")
    err = _communicate(proc, 120)
    assert proc.returncode == -signal.SIGKILL, err
    assert trash_dir(out).is_dir()  # the old dataset, moved aside
    if point == "kill-moved-aside":
        assert not out.exists() and (staging_dir(out) / "manifest.json").is_file()
    else:
        assert (out / ".lock").exists() and not staging_dir(out).exists()
    r = convert_cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert "already complete" in r.stdout
    assert f"removed {trash_dir(out)}" in r.stderr, r.stderr
    _same_as(out, data["ref"])
    _nothing_left(out)


def test_finished_conversion_killed_before_publishing_is_published(data, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the manifest, before the old dataset was moved aside: the next run rolls forward."""
    from convert import pipeline

    out = _copy(data["old"], tmp_path / "ds")
    args = [data["inp"], "--mapping", data["mapping"], "--out", out, "--reads-per-shard", RPS, "--no-progress"]

    def killed(*a, **k):
        raise _Killed

    monkeypatch.setattr(pipeline, "publish", killed)
    with pytest.raises(_Killed):
        convert_cli(*args, "--overwrite")
    monkeypatch.undo()
    assert (staging_dir(out) / "manifest.json").is_file() and fmt.read_manifest(out)["source"]["reads_per_shard"] == 4000
    r = convert_cli(*args, "--resume")
    assert r.returncode == 0 and "already complete" in r.stdout, r.stderr
    assert "published" in r.stderr and "removed" in r.stderr, r.stderr
    _same_as(out, data["ref"])
    _nothing_left(out)


def test_half_removed_old_dataset_is_removed_and_a_lost_out_is_restored(data, tmp_path: Path) -> None:
    """A kill inside the old dataset's removal; and --out gone with only the old copy complete."""
    out = _copy(data["ref"], tmp_path / "ds")
    trash = _copy(data["old"], trash_dir(out))
    (trash / "manifest.json").unlink()  # rmtree got this far
    (out / ".lock").write_text("999999999 2026-01-01 00:00:00 UTC")  # stale: nobody holds it
    r = convert_cli(data["inp"], "--out", out, "--resume", "--no-progress")
    assert r.returncode == 0 and "already complete" in r.stdout, r.stderr
    assert "removed" in r.stderr and "stale lock" in r.stderr, r.stderr
    _nothing_left(out)
    # Roll back: --out missing, the moved-aside copy complete: it is put back, never removed.
    os.rename(out, trash_dir(out))
    r = convert_cli(data["inp"], "--out", out, "--resume", "--no-progress")
    assert r.returncode == 0 and "already complete" in r.stdout, r.stderr
    assert "restored" in r.stderr, r.stderr
    _same_as(out, data["ref"])
    _nothing_left(out)


def test_trash_with_foreign_files_is_kept(data, tmp_path: Path) -> None:
    out = _copy(data["ref"], tmp_path / "ds")
    trash = trash_dir(out)
    trash.mkdir()
    (trash / "notes.txt").write_text("mine")
    r = convert_cli(data["inp"], "--out", out, "--resume", "--no-progress")
    assert r.returncode == 2 and "notes.txt" not in r.stderr and "does not remove them" in r.stderr, r.stderr
    assert (trash / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------- 4, 5. a second run on a busy --out


def test_two_resumes_on_one_damaged_dataset(data, tmp_path: Path) -> None:
    out = _copy(data["ref"], tmp_path / "ds")
    before = _digests(out)
    (out / "shard-00004.h5").write_bytes(b"damaged")
    release = tmp_path / "release"
    first = _child("hold-repair", release, data["inp"], "--out", out, "--resume", "--no-progress")
    holder = _wait_lock(staging_dir(out), first)
    r = run_convert(data["inp"], "--out", out, "--resume", "--no-progress")
    release.touch()
    out1, err1 = first.communicate(timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_paragraph(r.stderr)
    pid, _, started = holder.partition(" ")
    assert f"another converter (pid {pid}, started {started})" in line, line
    assert "--mapping" not in line
    assert first.returncode == 0 and "repaired 1 of" in out1, err1
    assert _digests(out) == before
    _nothing_left(out)


@pytest.mark.slow
def test_loser_of_the_lock_race_is_told_who_runs(data, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    release = tmp_path / "release"
    args = [data["inp"], "--mapping", data["mapping"], "--out", out, "--reads-per-shard", RPS, "--no-progress"]
    first = _child("hold-finish", release, *args)
    holder = _wait_lock(staging_dir(out), first, "plan.json")
    r = run_convert(*args)
    r_resume = convert_cli(*args, "--resume")
    release.touch()
    _, err1 = first.communicate(timeout=120)
    pid, _, started = holder.partition(" ")
    for res in (r, r_resume):
        assert res.returncode == 2, res.stderr
        line = _one_paragraph(res.stderr)
        assert f"another converter (pid {pid}, started {started})" in line, line
        assert "unfinished" not in line and "--resume" not in line
    assert first.returncode == 0, err1
    _same_as(out, data["ref"])
    _nothing_left(out)


# ------------------------------------------------------------- 6. an unreachable --scheduler


@pytest.mark.slow
def test_unreachable_scheduler_leaves_nothing_behind(data, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "ds"
    r = subprocess.run(
        [sys.executable, "-m", "convert", str(data["inp"]), "--mapping", str(data["mapping"]), "--out", str(out),
         "--scheduler", "tcp://127.0.0.1:9", "--no-progress"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "READSHARD_CLUSTER_CONNECT_S": "1"},
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "cannot reach the dask scheduler" in _one_paragraph(r.stderr)
    assert not out.exists()
    _nothing_left(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_unreachable_scheduler_keeps_a_resumed_conversion_and_the_old_dataset(
        data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    from convert import cluster

    out = _copy(data["old"], tmp_path / "ds")
    old = _digests(out)
    monkeypatch.setattr(cluster, "CONNECT_S", 0.2)
    base = [data["inp"], "--mapping", data["mapping"], "--out", out, "--reads-per-shard", RPS, "--no-progress",
            "--scheduler", "tcp://127.0.0.1:9"]
    r = convert_cli(*base, "--overwrite")
    assert r.returncode == 2 and "cannot reach" in r.stderr, r.stderr
    assert _digests(out) == old and not staging_dir(out).exists()
    monkeypatch.undo()
    kept = _staged(data, out, monkeypatch, "--overwrite")
    monkeypatch.setattr(cluster, "CONNECT_S", 0.2)
    r = convert_cli(*base, "--resume")
    assert r.returncode == 2 and "cannot reach" in r.stderr, r.stderr
    st = staging_dir(out)
    assert {p.name: p.stat().st_mtime_ns for p in st.glob("shard-*.h5")} == kept  # not this run's to remove
    assert _digests(out) == old
    monkeypatch.undo()
    r = convert_cli(data["inp"], "--mapping", data["mapping"], "--out", out, "--reads-per-shard", RPS,
                    "--no-progress", "--resume")
    assert r.returncode == 0, r.stderr
    _same_as(out, data["ref"])
    _nothing_left(out)
