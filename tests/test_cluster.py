"""``--scheduler``: conversion on a real dask cluster (scheduler + 2 workers as subprocesses).

The cluster is started by tests/_cluster.py: separate ``dask scheduler`` and ``dask worker``
processes on 127.0.0.1, so the workers are not the converter's children (what the pid-based
orphan guard rejected) and outlive it (what the run token guards against).
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the cluster extra (dask[distributed]) is not installed: pip install -e '.[cluster]'")

from _cluster import SubprocessCluster  # noqa: E402
from conftest import REPO, convert_cli, wait_for_shards, write_reads  # noqa: E402
from convert.pipeline import staging_dir  # noqa: E402

pytestmark = pytest.mark.slow  # a real dask scheduler and workers

RPS = "50"  # small units: many of them, so a kill lands mid-run


def _args(inp: Path, mapping: Path, out: Path, *extra: str) -> list[str]:
    # Input and mapping relative to the converter's cwd (their directory), as a user types them:
    # workers have another cwd, and the path is recorded in quarantine.tsv as typed.
    return [inp.name, "--mapping", mapping.name, "--out", str(out), "--reads-per-shard", RPS, "--no-progress", *extra]


def _run(inp: Path, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convert", *args], cwd=inp.parent, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _same_dataset(out: Path, ref: Path) -> None:
    assert (out / "manifest.json").read_bytes() == (ref / "manifest.json").read_bytes()
    shards = sorted(p.name for p in ref.glob("shard-*.h5"))
    assert sorted(p.name for p in out.glob("shard-*.h5")) == shards
    for name in shards + ["quarantine.fa", "quarantine.tsv"]:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Reads (4 real genomes, 2000 reads, a few bad records) and their --jobs 1 conversion."""
    d = tmp_path_factory.mktemp("cluster-data")
    inp, mapping = write_reads(d / "reads.fa", n_per_class=500)
    with open(inp, "ab") as f:  # bad records too: quarantine parts travel through the cluster
        f.write(b">lbl|999||10|unknown/1\nACGTACGTAC\n>no-header-format\nACGT\n>lbl|10||4|x/1\nAC!T\n")
    ref = d / "ref"
    res = convert_cli(*_args(inp, mapping, ref, "--jobs", "1"), cwd=inp.parent)
    assert res.returncode == 0, res.stderr
    return inp, mapping, ref


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A scheduler and two workers importing this checkout (PYTHONPATH)."""
    with SubprocessCluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def _start(inp: Path, args: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "convert", *args], cwd=inp.parent, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )



def _kill_cluster_run_after(inp: Path, mapping: Path, out: Path, address: str, shards: int) -> Path:
    """Start a --scheduler conversion, SIGKILL its process group after ``shards`` shards; return staging."""
    staging = staging_dir(out)
    proc = _start(inp, _args(inp, mapping, out, "--scheduler", address))
    try:
        wait_for_shards(staging, shards, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    return staging

@pytest.mark.slow
def test_cluster_output_identical_to_jobs1_and_resumes_after_kill(data, cluster, tmp_path: Path) -> None:
    inp, mapping, ref = data
    out = tmp_path / "out"
    res = _run(inp, _args(inp, mapping, out, "--scheduler", cluster.address))
    assert res.returncode == 0, res.stderr + cluster.logs()
    _same_dataset(out, ref)

    # Kill the converter mid-run; its workers live on. --resume on the cluster: same bytes.
    out2 = tmp_path / "out2"
    staging = _kill_cluster_run_after(inp, mapping, out2, cluster.address, shards=3)
    assert not out2.exists(), "an interrupted run publishes nothing"
    n_shards = len(list(ref.glob("shard-*.h5")))
    assert 0 < len(list(staging.glob("shard-*.h5"))) < n_shards
    res = _run(inp, _args(inp, mapping, out2, "--scheduler", cluster.address, "--resume"))
    assert res.returncode == 0, res.stderr + cluster.logs()
    _same_dataset(out2, ref)
    assert not staging.exists()


@pytest.mark.slow
def test_worker_without_readshard_or_other_version_fails_in_seconds(data, tmp_path: Path) -> None:
    inp, mapping, _ = data
    other = tmp_path / "other"  # another readshard: this checkout's converter with one line changed
    shutil.copytree(REPO / "convert", other / "convert", ignore=shutil.ignore_patterns("genomes", "__pycache__"))
    with open(other / "convert" / "fastx.py", "a") as f:
        f.write("\n# a different build\n")
    with SubprocessCluster(tmp_path / "cluster", blocked_workers=1, n_workers=1) as c:
        c.pythonpath = str(other)
        c.add_worker()
        c.wait_for_workers(2, 90)
        t0 = time.monotonic()
        res = _run(inp, _args(inp, mapping, tmp_path / "out", "--scheduler", c.address))
        elapsed = time.monotonic() - t0
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    err = res.stderr
    assert "cannot import readshard" in err and "ModuleNotFoundError" in err, err
    assert "runs readshard 0.1.0+src." in err, err  # the other version, named
    # Nothing was converted: the staging dir this run made is gone, so the same command is the advice.
    assert "rerun the same command" in err and not staging_dir(tmp_path / "out").exists(), err
    # Not a hang: the converter's own start-up (imports, tokenizer) dominates this.
    assert elapsed < 60, elapsed


def test_blocked_worker_joining_mid_run_fails_the_unit_not_hangs(data, tmp_path: Path) -> None:
    """Task code reaches workers by value: one without readshard fails the unit with a clear error."""
    from distributed import Client

    from convert import _remote
    from convert.cluster import ByValue
    from convert.fastx import iter_units

    inp, _, _ = data
    with SubprocessCluster(tmp_path / "cluster", blocked_workers=1, n_workers=1) as c:
        with Client(c.address, timeout=30, set_as_default=False) as client:
            unit = next(iter_units(inp, 0, 10))
            fut = client.submit(ByValue(_remote.run_unit), pickle.dumps((unit, 0, None)), str(tmp_path), "t", pure=False)
            with pytest.raises(RuntimeError, match="cannot import readshard.*--resume"):
                fut.result(timeout=60)


def test_stale_worker_publishes_nothing(data, tmp_path: Path) -> None:
    """A worker of a superseded run (its converter killed, a new one started) cannot publish."""
    from convert import cluster as cl
    from convert.fastx import iter_units

    inp, _, _ = data
    staging = tmp_path / "staging"
    (staging / ".units").mkdir(parents=True)
    old = cl._start_run(staging)
    new = cl._start_run(staging)  # the later run retires the old run's work directory
    assert old != new and not (staging / ".units" / f".run-{old}").exists()
    unit = next(iter_units(inp, 0, 10))
    with pytest.raises(cl.StaleRunError):
        cl.execute_unit(pickle.dumps((unit, 0, None, str(inp))), str(staging), old)
    # A later local run (--jobs, e.g. --resume after the cluster run was killed) retires it too.
    cl.retire_runs(staging)
    assert not list((staging / ".units").glob(".run-*"))
    with pytest.raises(cl.StaleRunError):
        cl.execute_unit(pickle.dumps((unit, 0, None, str(inp))), str(staging), new)
    assert not list(staging.glob("shard-*")) and not list((staging / ".units").glob("[uq]-*"))


@pytest.mark.slow
def test_local_resume_after_killed_cluster_run(data, cluster, tmp_path: Path) -> None:
    """--resume without --scheduler finishes a killed cluster run to the same bytes and retires its run."""
    inp, mapping, ref = data
    out = tmp_path / "out"
    staging = _kill_cluster_run_after(inp, mapping, out, cluster.address, shards=2)
    assert list((staging / ".units").glob(".run-*")), "the killed cluster run left its run directory"
    res = _run(inp, _args(inp, mapping, out, "--resume", "--jobs", "2"))
    assert res.returncode == 0, res.stderr
    _same_dataset(out, ref)


@pytest.mark.parametrize(
    "extra, env, message",
    [
        (["--jobs", "2"], {}, "--jobs is the local path"),
        ([], {"READSHARD_CLUSTER_CONNECT_S": "2"}, "cannot reach the dask scheduler at tcp://127.0.0.1:9"),
        ([], {"READSHARD_CLUSTER_CONNECT_S": "soon"}, "READSHARD_CLUSTER_CONNECT_S='soon' must be a positive number"),
    ],
    ids=["with-jobs", "unreachable", "bad-timeout"],
)
def test_cli_errors(data, tmp_path: Path, extra: list[str], env: dict[str, str], message: str) -> None:
    inp, mapping, _ = data
    t0 = time.monotonic()
    proc = _start(inp, _args(inp, mapping, tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9", *extra), **env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert message in err and "Traceback" not in err, err
    assert time.monotonic() - t0 < 60


@pytest.mark.slow
@pytest.mark.parametrize(
    "lose, message",
    [("workers", "no dask worker has been connected"), ("scheduler", "lost connection to the scheduler")],
)
def test_lost_cluster_stops_with_resume_message(data, tmp_path: Path, lose: str, message: str) -> None:
    inp, mapping, ref = data
    out = tmp_path / "out"
    staging = staging_dir(out)
    with SubprocessCluster(tmp_path / "cluster") as c:
        proc = _start(inp, _args(inp, mapping, out, "--scheduler", c.address),
                      READSHARD_CLUSTER_NO_WORKERS_S="3", READSHARD_CLUSTER_CONNECT_S="5")
        try:
            wait_for_shards(staging, 1, proc)
            if lose == "workers":
                c.kill_worker(0)
                c.kill_worker(1)
            else:
                c.kill_scheduler()
            _, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if proc.returncode == 0:
        pytest.skip(f"the run finished before the {lose} were killed")
    assert proc.returncode == 2, err
    assert message in err and "--resume" in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.slow
def test_one_worker_lost_mid_run_is_retried_to_the_same_bytes(data, tmp_path: Path) -> None:
    """dask reruns a lost worker's units on the other one; duplicates publish the same bytes."""
    inp, mapping, ref = data
    out = tmp_path / "out"
    staging = staging_dir(out)
    with SubprocessCluster(tmp_path / "cluster") as c:
        proc = _start(inp, _args(inp, mapping, out, "--scheduler", c.address))
        try:
            published = wait_for_shards(staging, 1, proc)
            running = proc.poll() is None
            c.kill_worker(0)
            _, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, err
    _same_dataset(out, ref)
    if not running or published >= len(list(ref.glob("shard-*.h5"))):
        pytest.skip("the run had written every shard before the worker was killed: no unit was retried")
