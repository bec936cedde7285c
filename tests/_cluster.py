"""A real dask cluster for tests: one ``dask scheduler`` and N ``dask worker`` subprocesses.

Not a ``LocalCluster``: its workers are children of the test process, so they never
exercise what a real cluster does (workers that are not the converter's children, that
outlive it, that import code from their own environment). Everything listens on 127.0.0.1
on free ports chosen by the OS; every wait is bounded; :meth:`SubprocessCluster.close`
(also on failure, via the context manager) ends each process group it started, by id.
As a second guard against leaks if the test process itself is killed, the scheduler
stops after ``--idle-timeout`` and each worker after ``--death-timeout`` without it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]

# Run as `python -c` for a worker that must not be able to import readshard even where it
# is pip-installed (CI installs it editable): a meta-path finder refuses readshard's
# packages, then the ordinary `dask worker` entry point runs.
_BLOCKING_WORKER = """
import sys
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("convert", "loaders", "train"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Refuse())
from distributed.cli.dask_worker import main
sys.argv[0] = "dask worker"
main()
"""


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class SubprocessCluster:
    """``dask scheduler`` + ``dask worker`` processes on 127.0.0.1, torn down on exit.

    Args:
        workdir: directory for logs, the scheduler file and worker scratch space.
        n_workers: worker processes (one thread each).
        pythonpath: what workers (and the scheduler) import readshard from; the repo
            checkout these tests run from by default.
        blocked_workers: how many of the workers cannot import readshard.
        start_timeout: seconds to wait for the scheduler and for all workers.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        n_workers: int = 2,
        pythonpath: str | os.PathLike[str] = REPO,
        blocked_workers: int = 0,
        start_timeout: float = 90.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.n_workers = n_workers
        self.pythonpath = str(pythonpath)
        self.blocked_workers = blocked_workers
        self.start_timeout = start_timeout
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.address = ""

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "SubprocessCluster":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self, pythonpath: str | None = None) -> dict[str, str]:
        """The environment the cluster's processes run with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
        env["PYTHONPATH"] = self.pythonpath if pythonpath is None else pythonpath
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, argv: Sequence[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            # Own session: close() ends the process and anything it started, by group id.
            return subprocess.Popen(
                list(argv), cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def start(self) -> None:
        """Start the scheduler, then the workers; wait (bounded) until all are registered."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        sched_file = self.workdir / "scheduler.json"
        sched_file.unlink(missing_ok=True)
        self.scheduler = self._spawn(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file), "--idle-timeout", "600s"],
            self.workdir / "scheduler.log", self.env(),
        )
        deadline = time.monotonic() + self.start_timeout
        while not self.address:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited ({self.scheduler.returncode}):\n{_tail(self.workdir / 'scheduler.log')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"dask scheduler not up after {self.start_timeout:.0f} s:\n{_tail(self.workdir / 'scheduler.log')}")
            try:
                self.address = json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        for i in range(self.n_workers):
            self.add_worker(blocked=i < self.blocked_workers)
        self.wait_for_workers(self.n_workers, max(1.0, deadline - time.monotonic()))

    def add_worker(self, *, blocked: bool = False) -> subprocess.Popen[bytes]:
        """Start one more worker (``blocked``: it cannot import readshard)."""
        i = len(self.workers)
        args = [self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                "--name", f"w{i}", "--local-directory", str(self.workdir / f"w{i}"), "--death-timeout", "60s"]
        head = [sys.executable, "-c", _BLOCKING_WORKER] if blocked else [sys.executable, "-m", "distributed.cli.dask_worker"]
        proc = self._spawn(head + args, self.workdir / f"worker{i}.log", self.env())
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int, timeout: float) -> None:
        """Wait until ``n`` workers are registered with the scheduler."""
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            try:
                client.wait_for_workers(n, timeout=timeout)
            except TimeoutError:
                logs = "\n".join(f"--- worker {i}:\n{_tail(self.workdir / f'worker{i}.log', 10)}" for i in range(len(self.workers)))
                raise TimeoutError(f"{n} dask workers not registered after {timeout:.0f} s\n{logs}") from None

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` (a lost node)."""
        _end(self.workers[i], signal.SIGKILL, 10.0)

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler (a lost connection for every client)."""
        if self.scheduler is not None:
            _end(self.scheduler, signal.SIGKILL, 10.0)

    def close(self) -> None:
        """End every process this cluster started: workers first, then the scheduler."""
        for proc in self.workers:
            _end(proc, signal.SIGTERM, 5.0)
        if self.scheduler is not None:
            _end(self.scheduler, signal.SIGTERM, 5.0)

    def logs(self) -> str:
        """The tails of all logs (for assertion messages)."""
        parts = [f"--- scheduler:\n{_tail(self.workdir / 'scheduler.log')}"]
        parts += [f"--- worker {i}:\n{_tail(self.workdir / f'worker{i}.log')}" for i in range(len(self.workers))]
        return "\n".join(parts)


def _end(proc: subprocess.Popen[bytes], sig: int, grace: float) -> None:
    """Signal ``proc``'s process group, wait ``grace`` s, then SIGKILL it (bounded)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, or a process that ignored SIGTERM
    except ProcessLookupError:
        pass
    try:
        proc.wait(10.0)
    except subprocess.TimeoutExpired:
        pass
