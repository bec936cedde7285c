"""``--scheduler ADDRESS``: run the converter's units on a dask.distributed cluster.

The units are the same pure functions as for ``--jobs``, so the dataset is byte-identical
to ``--jobs 1``. What differs is who may write into the staging directory:

* **Run token, not a pid guard.** Cluster workers are not children of the converter and
  outlive it, so the local orphan guard (parent pid + ``flock``) cannot apply. At start
  the converter writes a random token to ``.units/run-token.json``, moves the work
  directories of earlier runs aside and deletes them, and creates
  ``.units/.run-<token>/``. A worker builds a unit in its own scratch directory inside
  that run directory (``<host>-<pid>-<random>``: unique per worker and per execution),
  checks the token, and renames the shard, quarantine parts and, last, the unit record
  into staging. The scratch directory is never created with ``parents``, so a worker that
  outlives its run finds its run directory gone: its ``mkdir`` or ``rename`` fails and it
  publishes nothing into the later run. A unit executed twice in one run (dask reruns
  tasks of a lost worker) publishes the same bytes twice, which is harmless.
* **Fail clearly, never hang.** Before any unit runs, every worker answers a probe
  (bounded wait) saying which readshard it imports (version + a hash of the converter's
  source), whether it reads the inputs, sees this run's staging directory and token, and
  loads the same tokenizer; the scheduler's readshard, if it has one, must match too.
  Task code reaches workers as functions pickled by value (:mod:`convert._remote`) with
  the unit as opaque bytes, so a worker without readshard fails the task with a clear
  message instead of wedging. A unit that keeps killing workers, a cancelled future, a
  lost scheduler connection, or no workers for :data:`NO_WORKERS_S` stops the run with a
  message to rerun with ``--resume``. A worker lost mid-unit is retried by dask on
  another worker (safe: duplicates publish the same bytes).

The driver sends each unit (for a plain file only its path, offset and length) and
receives a small record per unit; shards never travel through it.

Why dask.distributed futures and not joblib's dask backend (which also runs the units
unchanged): the converter needs what the backend hides: a bounded window of units in flight
that follows the cluster's size, each future's state (lost, cancelled, erred, killed worker)
to say what went wrong, the probe before the first unit, and control of how task code is
pickled (joblib's batches refer to readshard by name: a worker without it hangs the run).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import secrets
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import shards as fmt
from .fastx import Unit
# The worker side, re-exported: dask workers reach it through convert._remote.
from .clusterworker import TOKEN_FILE, StaleRunError, code_identity, execute_unit, run_dir, worker_check
from .unit import BadRecordError, ConvertError

__all__ = [
    "StaleRunError",
    "ByValue",
    "retire_runs",
    "code_identity",
    "run_units_on_cluster",
    "worker_check",
    "execute_unit",
    "CONNECT_S",
    "PROBE_S",
    "NO_WORKERS_S",
]


def _env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment (a ConvertError if it is not one)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConvertError(f"{name}={raw!r} must be a positive number of seconds; unset it for the default {default:.0f}")
    return value


CONNECT_S = _env_seconds("READSHARD_CLUSTER_CONNECT_S", 30)
"""Seconds to reach the scheduler and for the first worker to be there."""
PROBE_S = _env_seconds("READSHARD_CLUSTER_PROBE_S", 120)
"""Seconds every worker and the scheduler get to answer the start-up probe."""
NO_WORKERS_S = _env_seconds("READSHARD_CLUSTER_NO_WORKERS_S", 120)
"""Seconds a run waits with no worker connected before it stops."""
_RESULT_S = 10.0  # a record is a small dict; longer means its worker is gone (then read the file)
_POLL_S = 2.0  # seconds between health checks while no unit finishes
_INSTALL_HINT = "install the cluster extra: pip install 'readshard[cluster]' (dask[distributed])"


# ----------------------------------------------------------------------------- converter side


def _remove_tree(path: Path, attempts: int = 5) -> None:
    """Delete a tree this tool created; retry, since a late worker may add a file meanwhile."""
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.2)


def _start_run(staging: Path) -> str:
    """Write a new run token, retire the work directories of earlier runs, make this run's."""
    token = secrets.token_hex(16)
    fmt.write_json_atomic(staging / ".units" / TOKEN_FILE, {"token": token, "host": socket.gethostname(), "pid": os.getpid()})
    _retire_run_dirs(staging)
    run_dir(staging, token).mkdir()
    return token


def retire_runs(staging: Path) -> None:
    """End every earlier ``--scheduler`` run in ``staging``: its workers can no longer publish there.

    A converter without ``--scheduler`` calls this on start (e.g. a local ``--resume`` after
    a cluster run was killed): the token goes, then the run directories.
    """
    (staging / ".units" / TOKEN_FILE).unlink(missing_ok=True)
    _retire_run_dirs(staging)


def _retire_run_dirs(staging: Path) -> None:
    units = staging / ".units"
    for child in list(units.iterdir()):
        if child.is_symlink() or not child.is_dir():
            continue
        if child.name.startswith(".run-"):
            # Rename first (atomic): a late worker's mkdir/rename under the old name now fails.
            stale = units / f".stale-{secrets.token_hex(4)}-{child.name[5:13]}"
            os.replace(child, stale)
            child = stale
        if child.name.startswith(".stale-"):
            _remove_tree(child)


class ByValue:
    """A function of :mod:`convert._remote` that unpickles without readshard on the other side.

    dask pickles a task (function and arguments) with plain pickle, which refers to
    ``convert._remote.run_unit`` by name; a worker that cannot import ``convert`` then fails
    while reading the task and the run waits forever. This wrapper pickles as
    ``cloudpickle.loads(<the function's code>)``, which any dask process can load.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        import cloudpickle

        from . import _remote

        self.fn = fn
        was = _remote.__name__ in cloudpickle.list_registry_pickle_by_value()
        cloudpickle.register_pickle_by_value(_remote)
        try:
            self.code = cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            if not was:
                cloudpickle.unregister_pickle_by_value(_remote)
        self.__name__ = fn.__name__  # what dask logs ("Run out-of-band function 'probe'")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        import cloudpickle

        return cloudpickle.loads, (self.code,)


def _call_with_timeout(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn`` in a daemon thread; a :class:`ConvertError` if it takes over ``timeout`` s."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name=f"readshard-{what}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ConvertError(f"{what} did not answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _connect(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise ConvertError(f"--scheduler needs dask.distributed: {_INSTALL_HINT}") from None
    try:
        client = Client(address, timeout=CONNECT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConvertError(
            f"cannot reach the dask scheduler at {address} within {CONNECT_S:.0f} s ({exc}); start one with "
            "`dask scheduler` and pass the address it prints (tcp://HOST:8786), then rerun the same command"
        ) from None
    try:
        client.wait_for_workers(1, timeout=CONNECT_S)
    except TimeoutError:
        client.close()
        raise ConvertError(
            f"no dask worker is connected to {address} after {CONNECT_S:.0f} s; start workers with "
            f"`dask worker {address} --nthreads 1`, then rerun the same command"
        ) from None
    return client


def _check_cluster(client: Any, address: str, inputs: list[str], staging: Path, token: str, settings: Any) -> int:
    """Probe the scheduler and every worker; a ConvertError listing what is wrong. Returns workers."""
    from . import _remote

    mine = code_identity()
    args = (inputs, str(staging), token, settings.tokenizer, settings.tokenizer_info.get("sha256", ""))
    answers = _call_with_timeout(
        lambda: client.run(ByValue(_remote.probe), *args, on_error="return"), PROBE_S, "the dask workers' start-up check"
    )
    problems: list[str] = []
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException) or not isinstance(answer, dict):
            problems.append(f"worker {worker}: the check failed ({answer!r})")
            continue
        if "error" in answer:
            problems.append(f"worker {worker} on {answer['where']}: {answer['error']}")
            continue
        if answer["identity"] != mine:
            problems.append(f"worker {worker} on {answer['where']}: runs readshard {answer['identity']}, this converter {mine}")
        problems += [f"worker {worker} on {answer['where']}: {p}" for p in answer["problems"]]
    sched = _call_with_timeout(
        lambda: client.run_on_scheduler(ByValue(_remote.probe), [], str(staging), token, "", ""), PROBE_S, f"the dask scheduler at {address}"
    )
    if sched.get("identity") not in (None, mine):
        # The scheduler never unpickles readshard objects (tasks reach it as opaque bytes), so
        # it may lack readshard; one that has a different one means a mixed environment.
        problems.append(f"scheduler on {sched['where']}: runs readshard {sched['identity']}, this converter {mine}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ConvertError(
            f"the dask cluster at {address} cannot run this conversion: {shown}. Every worker needs the same "
            "readshard (pip install the same version or checkout) and must read the inputs and the staging "
            f"directory {staging} at the same paths (a shared filesystem). Fix this, then rerun the same command."
        )
    return len(answers)



def _unit_failure(exc: BaseException, index: int, address: str) -> BaseException:
    """The error a failed unit ends the run with (bad records keep their own message)."""
    if isinstance(exc, (BadRecordError, ConvertError)):
        return exc
    name = type(exc).__name__
    if name == "KilledWorker":
        return ConvertError(
            f"unit {index} killed every dask worker that ran it ({exc}); out of memory or a crash? Finished "
            "shards are kept: rerun with --resume (a smaller --reads-per-shard needs less memory per worker)."
        )
    if isinstance(exc, RuntimeError) and "cannot import readshard" in str(exc):
        return ConvertError(str(exc))
    return ConvertError(
        f"unit {index} failed on the dask cluster at {address} ({name}: {exc}). Finished shards are kept: "
        "fix the cause, then rerun the same command with --resume."
    )


def run_units_on_cluster(
    address: str,
    units: Iterator[tuple[Unit, int]],
    settings: Any,
    staging: Path,
    inputs: list[str],
) -> Iterator[dict[str, Any]]:
    """Run ``convert_unit`` for each ``(unit, index)`` on the cluster; yield records as they finish.

    ``settings`` is the pipeline's worker settings; the run token replaces its pid guard.
    In flight at a time: twice the cluster's threads (the driver holds only those units).

    Raises:
        ConvertError: the cluster cannot run this conversion (it says to rerun the same
            command: the converter removes the staging directory it made when no unit was
            converted), or the run was interrupted (lost connection, cancelled, workers gone,
            a unit that kills workers; it says to rerun with ``--resume``).
        BadRecordError: under ``--on-bad-record error``.
    """
    from distributed.comm.core import CommClosedError

    token = _start_run(staging)
    with _quiet_dask_logs():
        client = _connect(address)
        try:
            _check_cluster(client, address, [os.path.abspath(p) for p in inputs], staging, token, settings)
            yield from _drive(client, address, units, settings, staging, token)
        except CommClosedError as exc:  # an OSError: not the staging I/O error it would be reported as
            raise _lost(address, exc) from None
        finally:
            client.close(timeout=10)


class _DropAllExit(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for a gather abandoned on a dead worker."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "AllExit"


@contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """The converter reports cluster trouble in its own words (one paragraph, exit code 2);
    dask's client-side log lines and tracebacks (reconnect attempts, a lost worker's
    results) would bury it."""
    # dask configures distributed.client etc. with their own levels and handlers (no
    # propagation), so each is quieted, not just the parent.
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in ("distributed", "tornado")]
    saved = {n: logging.getLogger(n).level for n in names + ["distributed", "tornado"]}
    for name in saved:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    # Kept after the run: asyncio logs an abandoned task when it is garbage-collected.
    if not any(isinstance(f, _DropAllExit) for f in logging.getLogger("asyncio").filters):
        logging.getLogger("asyncio").addFilter(_DropAllExit())
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _drive(client: Any, address: str, units: Iterator[tuple[Unit, int]], settings: Any, staging: Path, token: str) -> Iterator[dict[str, Any]]:
    """Submit units (a bounded window), yield records, and stop loudly when the run breaks."""
    from distributed import as_completed

    from . import _remote

    run_unit = ByValue(_remote.run_unit)
    pending: dict[Any, int] = {}
    finished = as_completed([], loop=client.loop, with_results=False, raise_errors=False)
    source = iter(units)
    exhausted = False
    threads = max(1, sum(client.nthreads().values()))
    last_check = time.monotonic()
    no_workers_since: float | None = None
    try:
        while pending or not exhausted:
            while not exhausted and len(pending) < 2 * threads:
                try:
                    unit, index = next(source)
                except StopIteration:
                    exhausted = True
                    break
                blob = pickle.dumps((unit, index, settings, os.path.abspath(unit.file)), protocol=pickle.HIGHEST_PROTOCOL)
                key = f"readshard-unit-{index:05d}-{token[:8]}"
                future = client.submit(run_unit, blob, str(staging), token, key=key, pure=False)
                pending[future] = index
                finished.add(future)
            if finished.has_ready():
                for future in finished.next_batch(block=False):
                    index = pending.pop(future)
                    if future.status in ("finished", "lost"):  # lost: its result died with a worker
                        yield _record(client, future, index, staging, address)
                    elif future.status == "error":
                        raise _unit_failure(future.exception(), index, address)
                    else:
                        raise _lost(address, f"unit {index} was {future.status}")
                continue
            time.sleep(0.05)
            if time.monotonic() - last_check > _POLL_S:
                last_check = time.monotonic()
                threads, no_workers_since = _health(client, address, threads, no_workers_since)
    finally:
        if pending:
            client.cancel(list(pending))


def _record(client: Any, future: Any, index: int, staging: Path, address: str) -> dict[str, Any]:
    """A finished unit's record: its result, or (its worker is gone) the record it published."""
    # The result lives in the memory of the worker that ran the unit. If that worker died
    # since, dask would recompute it (forever, with no workers left); the unit itself is
    # published by then, so read the record it wrote. The result is preferred: on a network
    # filesystem a freshly renamed file may not be visible here yet.
    try:
        if future.status == "finished" and client.who_has([future]).get(future.key):
            return future.result(timeout=_RESULT_S)
    except (OSError, TimeoutError):  # CommClosedError is an OSError
        pass
    try:
        with open(staging / ".units" / f"u-{index:05d}.json", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise _lost(address, f"the result of unit {index} is lost with its worker ({exc})") from None


def _health(client: Any, address: str, threads: int, no_workers_since: float | None) -> tuple[int, float | None]:
    """Between results: the connection is up and some worker is there (else a ConvertError)."""
    if client.status not in ("running", "connecting"):
        raise _lost(address, f"client {client.status}")
    try:
        workers = _call_with_timeout(lambda: client.scheduler_info(n_workers=-1).get("workers", {}), CONNECT_S, f"the dask scheduler at {address}")
    except (OSError, TimeoutError) as exc:
        raise _lost(address, exc) from None
    except ConvertError as exc:
        raise _lost(address, exc) from None
    n = sum(int(w.get("nthreads", 1)) for w in workers.values())
    if n:
        return n, None
    since = no_workers_since or time.monotonic()
    if time.monotonic() - since > NO_WORKERS_S:
        raise ConvertError(
            f"no dask worker has been connected to {address} for {NO_WORKERS_S:.0f} s; finished shards are "
            "kept: start workers, then rerun the same command with --resume"
        )
    return threads, since


def _lost(address: str, why: object) -> ConvertError:
    return ConvertError(
        f"the run on the dask cluster at {address} was interrupted ({why}): lost connection to the scheduler, "
        "or the run was cancelled. Finished shards are kept: rerun the same command with --resume."
    )
