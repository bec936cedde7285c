"""Crash safety: SIGKILL at random moments (whole group, one worker, the parent), then --resume.

The full run (>= 20 trials) is ``python benchmarks/crash_resume.py --trials 20``; here a
handful of trials, one per kill target, on a smaller input.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import REPO


def _crash_resume():
    spec = importlib.util.spec_from_file_location("crash_resume", REPO / "benchmarks" / "crash_resume.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # many killed converter processes
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


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the converter catches it."""


@pytest.mark.parametrize(
    "after_manifest, remove",
    [
        (False, []),                                   # killed while writing the manifest
        (True, ["q-00001.fa", "q-00001.tsv"]),         # killed inside rmtree(.units): parts gone, record left
        (True, ["u-00000.json", "u-00002.json"]),      # ... records gone, parts left
        (True, [".units"]),                            # killed before unlinking plan.json
        (True, [".units", "plan.json"]),               # killed just before the final rename
    ],
)
def test_kill_during_finalisation_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              after_manifest: bool, remove: list[str]) -> None:
    import shutil

    from conftest import write_reads
    from convert import ConvertOptions, convert
    import shards as fmt
    from convert.pipeline import staging_dir

    text = write_reads(tmp_path / "in" / "r.fa", n_per_class=150, classes=2)[0].read_bytes()
    inp = tmp_path / "in" / "r.fa"
    inp.write_bytes(text[: len(text) // 2] + b">not_the_seed_format\nACGT\n" + text[len(text) // 2 :].lstrip(b"\n"))
    mapping = tmp_path / "in" / "mapping.tsv"

    def opts(out: Path, **kw) -> ConvertOptions:
        return ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), reads_per_shard=100,
                              progress=False, **kw)

    convert(opts(tmp_path / "ref"))
    real = fmt.write_manifest

    def killed(directory, manifest):
        if after_manifest:
            real(directory, manifest)
        raise _Killed

    monkeypatch.setattr(fmt, "write_manifest", killed)
    out = tmp_path / "out"
    with pytest.raises(_Killed):
        convert(opts(out))
    monkeypatch.setattr(fmt, "write_manifest", real)
    st = staging_dir(out)
    for name in remove:
        p = st / name if name in (".units", "plan.json") else st / ".units" / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    assert not out.exists()
    report = convert(opts(out, resume=True))
    assert report["skipped"] == 1
    ref = tmp_path / "ref"
    for name in ("manifest.json", "quarantine.fa", "quarantine.tsv"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())


def test_new_converter_waits_for_orphaned_workers(tmp_path: Path) -> None:
    """A worker of a killed converter still writing (shared lock held) blocks a new one."""
    import fcntl
    import os
    import time

    from convert.pipeline import ConvertError, _wait_for_orphans

    (tmp_path / ".units").mkdir()
    fd = os.open(tmp_path / ".units" / ".workers.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        t0 = time.monotonic()
        with pytest.raises(ConvertError, match="still writing"):
            _wait_for_orphans(tmp_path, timeout=0.3)
        assert time.monotonic() - t0 >= 0.3
    finally:
        os.close(fd)
    _wait_for_orphans(tmp_path, timeout=0.3)  # released: returns at once


def test_orphaned_worker_refuses_to_write(tmp_path: Path) -> None:
    """A pool worker whose converter is gone (it is no longer its parent) writes nothing."""
    from convert.fastx import Unit
    from convert.unit import ConvertError, Settings, convert_unit

    (tmp_path / ".units").mkdir()
    unit = Unit(file="x.fa", file_index=0, index_in_file=0, first_line=1, first_record=0, data=b">a\nACGT\n", fmt="fasta")
    gone = 2**22 + 12345  # neither this process nor its parent
    s = Settings(tokenizer="char", max_length=8, header_regex="(?P<class_id>.*)", label_map=None, layout="mmap",
                  compression="gzip", on_bad_record="skip", staging=str(tmp_path), parent_pid=gone)
    with pytest.raises(ConvertError, match="is gone"):
        convert_unit(unit, 0, s)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".units", ".workers.lock"]
