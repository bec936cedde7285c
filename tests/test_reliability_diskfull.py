"""Disk full and unwritable output: a clear error, nothing published, --resume completes.

Write failures are injected in-process (the k-th file write raises ENOSPC after writing
half its bytes) and, where this machine lets us mount one, produced for real on a small
tmpfs (full, then read-only).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import convert_cli, converted_reads
from convert import ConvertOptions, convert
import shards as fmt
from shards import writer
from convert.pipeline import ConvertError, staging_dir

RPS = 250


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return converted_reads(tmp_path_factory.mktemp("diskfull"), n_per_class=500, classes=4, reads_per_shard=RPS)


def _opts(inp: Path, mapping: Path, out: Path, **kw) -> ConvertOptions:
    # jobs=1 unless given: the write-failure injection below patches this process's writes.
    return ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), reads_per_shard=RPS,
                          progress=False, **{"jobs": 1, **kw})


def _same_as(out: Path, ref: Path) -> None:
    assert (out / "manifest.json").read_bytes() == (ref / "manifest.json").read_bytes()
    for e in json.loads((ref / "manifest.json").read_text())["shards"]:
        assert fmt.file_sha256(out / e["file"]) == e["sha256"]
    assert (out / "quarantine.fa").read_bytes() == (ref / "quarantine.fa").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())


# Writes of a jobs=1 run, in order: plan.json, then per unit its shard and unit record,
# then report.json and manifest.json. 2000 reads / 250 = 8 units -> 19 writes.
@pytest.mark.parametrize("k, what", [(1, "plan.json"), (2, "shard-00000"), (3, "u-00000.json"),
                                     (10, "shard-00004"), (18, "report.json"), (19, "manifest.json")])
def test_enospc_on_kth_write_then_resume(data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int, what: str) -> None:
    inp, mapping, ref = data
    out = tmp_path / "out"
    real = writer._write_file
    calls: list[str] = []

    def full_disk(path, payload, **kw):
        calls.append(str(path))
        if len(calls) == k:
            with open(path, "wb") as f:  # a partly written file, as a full disk leaves it
                f.write(payload[: len(payload) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, payload, **kw)

    monkeypatch.setattr(writer, "_write_file", full_disk)
    with pytest.raises(ConvertError) as err:
        convert(_opts(inp, mapping, out))
    msg = str(err.value)
    assert "disk full" in msg and what.split(".")[0] in msg and "--resume" in msg and str(out) in msg
    assert not out.exists()
    assert staging_dir(out).is_dir()
    monkeypatch.setattr(writer, "_write_file", real)
    # Without --resume the unfinished work is not discarded silently.
    with pytest.raises(ConvertError, match="--resume"):
        convert(_opts(inp, mapping, out))
    report = convert(_opts(inp, mapping, out, resume=True))
    assert report["records_in"] == report["written"] + report["skipped"]
    _same_as(out, ref)
    assert not staging_dir(out).exists()


def test_write_file_error_names_the_file(tmp_path: Path) -> None:
    """A plain write error carries no file name; the format module adds it."""
    with pytest.raises(OSError) as err:
        writer._write_file(tmp_path / "missing-dir" / "x.json", b"{}")
    assert err.value.filename.endswith("x.json")


def test_output_parent_is_a_file(data, tmp_path: Path) -> None:
    inp, mapping, _ = data
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = convert_cli(inp, "--mapping", mapping, "--out", blocker / "out", "--no-progress")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "cannot write" in res.stderr and "Nothing was published" in res.stderr


def test_output_parent_read_only_by_permissions(data, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod cannot stop root from writing (the read-only tmpfs case covers it)")
    inp, mapping, _ = data
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        res = convert_cli(inp, "--mapping", mapping, "--out", parent / "out", "--no-progress")
    finally:
        parent.chmod(0o755)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "Permission denied" in res.stderr and not (parent / "out").exists()


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A 96 KiB tmpfs mounted at tmp_path/mnt, or a skip where mounting is not allowed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def _remount(mnt: Path, options: str) -> None:
    res = subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("jobs, parallel", [("1", "auto"), ("2", "processes"), ("2", "threads")])
def test_real_full_filesystem_then_resume(data, tmpfs: Path, jobs: str, parallel: str) -> None:
    inp, mapping, ref = data
    out = tmpfs / "out"
    args = (inp, "--mapping", mapping, "--out", out, "--reads-per-shard", RPS, "--jobs", jobs, "--parallel", parallel,
            "--no-progress")
    res = convert_cli(*args)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "disk full" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr  # no HDF5 noise
    assert not out.exists()
    done = sorted(p.name for p in staging_dir(out).glob("shard-*.h5"))
    assert 0 < len(done) < 8, done  # failed mid-run, after some shards
    for name in done:  # what is published under a final name is complete
        fmt.read_shard_attrs(staging_dir(out) / name)
    _remount(tmpfs, "size=4m")  # space freed
    res = convert_cli(*args, "--resume")
    assert res.returncode == 0, res.stderr
    _same_as(out, ref)


def test_real_read_only_filesystem(data, tmpfs: Path) -> None:
    inp, mapping, _ = data
    _remount(tmpfs, "ro")
    res = convert_cli(inp, "--mapping", mapping, "--out", tmpfs / "out", "--no-progress")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "Read-only file system" in res.stderr and "Nothing was published" in res.stderr
    assert not (tmpfs / "out").exists()
