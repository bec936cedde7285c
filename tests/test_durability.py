"""When shards reach the disk: the converter, not its workers, fsyncs them, before publishing.

Local workers write shards and unit records without fsync (waiting on the disk there held a
core idle); the converter's own thread fsyncs each shard as its unit finishes. What makes
that safe is that a unit record is never trusted blindly: ``--resume`` checks the shard's
size and sha256, so a unit whose unsynced writes a power loss took is converted again. Both
halves are checked here with real conversions: fsync calls observed (the real ``os.fsync``
still runs), and a killed run whose written-but-unsynced files are then damaged.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from conftest import convert_cli, kill_group, shard_hashes, start_convert, wait_for_shards, write_reads
from convert.cli import main
from convert.pipeline import staging_dir


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record (thread name, file name) of every os.fsync in this process; the real fsync runs."""
    calls: list[tuple[str, str]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append((threading.current_thread().name, os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


@pytest.mark.parametrize("jobs, parallel", [("2", "threads"), ("1", "auto"), ("2", "processes")])
def test_every_shard_is_fsynced_by_the_converter_before_publishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str, parallel: str
) -> None:
    inp, mapping = write_reads(tmp_path / "r.fa", n_per_class=600, classes=3)
    out = tmp_path / "out"
    calls = _fsyncs(monkeypatch)
    rc = main([str(inp), "--mapping", str(mapping), "--out", str(out), "--reads-per-shard", "300",
               "--jobs", jobs, "--parallel", parallel, "--no-progress"])
    assert rc == 0
    shards = sorted(p.name for p in out.glob("shard-*.h5"))
    assert len(shards) == 6
    main_thread = threading.main_thread().name
    synced = [name for thread, name in calls if thread == main_thread and name.startswith("shard-")]
    assert sorted(synced) == shards  # each shard once, under its final name
    # No worker thread waited on the disk (worker processes cannot be observed from here).
    assert [c for c in calls if c[0] != main_thread] == []
    # Every shard reached the disk before the manifest that publishes it.
    order = [name for _, name in calls]
    manifest = max(i for i, name in enumerate(order) if "manifest" in name)
    assert all(order.index(s) < manifest for s in shards)


@pytest.mark.slow  # killed converter processes
@pytest.mark.parametrize("damage", ["shard emptied", "shard cut short", "unit record emptied"])
def test_unsynced_writes_lost_after_a_crash_are_redone(big_converted: tuple[Path, Path, Path], tmp_path: Path,
                                                       damage: str) -> None:
    """As after a power loss: files a killed run wrote (and nobody synced) lose their data."""
    inp, mapping, ref = big_converted
    out = tmp_path / "out"
    proc = start_convert(inp, mapping, out, "--jobs", "2")
    staging = staging_dir(out)
    wait_for_shards(staging, 4, proc, timeout=60)
    if not kill_group(proc) and proc.returncode == 0:
        pytest.skip("the conversion finished before it was killed (a loaded machine)")
    done = sorted(p for p in (staging / ".units").glob("u-*.json"))
    assert done, "the killed run finished no unit"
    index = done[0].stem.split("-")[1]
    shard = staging / f"shard-{index}.h5"
    if damage == "shard emptied":
        shard.write_bytes(b"")
    elif damage == "shard cut short":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    else:
        done[0].write_bytes(b"")
    res = convert_cli(inp, "--mapping", mapping, "--out", out, "--reads-per-shard", "500", "--resume",
                      "--jobs", "2", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert shard_hashes(out) == shard_hashes(ref)
    assert (out / "manifest.json").read_bytes() == (ref / "manifest.json").read_bytes()


def _resident_fraction(path: Path) -> float:
    """The share of ``path``'s pages in the page cache (mincore on a private mapping; Linux)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, flags=mmap.MAP_PRIVATE,
                                          prot=mmap.PROT_READ | mmap.PROT_WRITE) as m:
        base = ctypes.c_char.from_buffer(m)  # a private mapping: nothing is written
        vec = (ctypes.c_ubyte * pages)()
        rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(base)), ctypes.c_size_t(size), vec)
        del base
    assert rc == 0, os.strerror(ctypes.get_errno())
    return sum(v & 1 for v in vec) / pages


@pytest.mark.skipif(not hasattr(os, "posix_fadvise") or not sys.platform.startswith("linux"), reason="Linux page cache")
@pytest.mark.parametrize("drop", [False, True])
def test_fsync_file_drops_the_synced_pages_on_request(tmp_path: Path, drop: bool) -> None:
    from shards import fsync_file

    path = tmp_path / "shard.bin"
    data = os.urandom(4 << 20)
    path.write_bytes(data)
    assert _resident_fraction(path) > 0.9  # just written: in the page cache
    fsync_file(path, drop_cache=drop)
    assert (_resident_fraction(path) < 0.1) is drop
    assert path.read_bytes() == data  # dropped from memory only, never from the file


def test_a_conversion_leaves_its_shards_out_of_the_page_cache(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "r.fa", n_per_class=600, classes=3)
    out = tmp_path / "out"
    assert main([str(inp), "--mapping", str(mapping), "--out", str(out), "--reads-per-shard", "300",
                 "--jobs", "2", "--no-progress"]) == 0
    shards = sorted(out.glob("shard-*.h5"))
    assert shards and all(_resident_fraction(p) < 0.5 for p in shards)
