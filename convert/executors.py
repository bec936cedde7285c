"""How a local conversion runs its units: in this process, on threads, or on worker processes.

Every executor takes the same ``(unit, index)`` tasks and the same pure unit function and
yields the unit records; the output is byte-identical whichever runs (see
:mod:`convert.pipeline`).

* ``threads``: the default whenever a unit's hot path releases the GIL: the default header
  format parsed by numba (:mod:`convert.fastparse`), the exact fast BPE
  (:mod:`convert.bpe`), numpy, file I/O and ``hashlib`` all run outside it, so ``--jobs N``
  threads use N cores without starting N interpreters, importing numba N times or pickling
  a single record (about 1 s of a 2 M-read conversion on two cores went to worker start-up).
* ``processes``: joblib/loky worker processes; needed when the unit's work holds the GIL (a
  custom ``--header-regex`` parses each record in Python; the Hugging Face tokenizer, for
  other tokenizer files and for units under the fast encoder's minimum; ``--layout
  compressed``, whose gzip runs under h5py's global lock), and chosen with
  ``--parallel processes`` to isolate units in their own address spaces.

A thread executor keeps at most ``2 * jobs`` units queued, so memory stays bounded and the
scan of the input (in the calling thread) stays ahead of the workers.
"""

from __future__ import annotations

import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

__all__ = ["PARALLEL_MODES", "choose_parallel", "run_serial", "run_threads", "run_processes"]

PARALLEL_MODES = ("auto", "threads", "processes")

Task = tuple[Any, int]
UnitFn = Callable[..., dict[str, Any]]


def choose_parallel(requested: str, jobs: int, gil_free: bool) -> str:
    """The executor for ``--parallel requested`` and ``--jobs jobs``: serial, threads or processes.

    Args:
        requested: ``auto``, ``threads`` or ``processes``.
        jobs: units run at once (1 runs them in this process, in order).
        gil_free: whether a unit's hot path releases the GIL (see the module docstring);
            ``auto`` picks threads only then. ``threads`` is honoured either way (correct,
            only slower when the GIL binds).

    Raises:
        ValueError: ``requested`` is not one of :data:`PARALLEL_MODES`.
    """
    if requested not in PARALLEL_MODES:
        raise ValueError(f"--parallel must be one of {', '.join(PARALLEL_MODES)}, got {requested!r}")
    if jobs <= 1:
        return "serial"
    if requested == "auto":
        return "threads" if gil_free else "processes"
    return requested


def run_serial(fn: UnitFn, tasks: Iterable[Task], *args: Any) -> Iterator[dict[str, Any]]:
    """Run ``fn(unit, index, *args)`` for each task in this thread, in order."""
    for unit, index in tasks:
        yield fn(unit, index, *args)


def run_threads(fn: UnitFn, tasks: Iterable[Task], jobs: int, *args: Any) -> Iterator[dict[str, Any]]:
    """Run ``fn(unit, index, *args)`` on ``jobs`` threads; yield records in task order.

    The first exception of a unit is raised here (in task order); queued units are then
    cancelled and running ones finish before it propagates (a unit is never left half
    written by this executor: its own writes are atomic renames).
    """
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="readshard-unit")
    queued: deque[Future[dict[str, Any]]] = deque()
    try:
        for unit, index in tasks:
            queued.append(pool.submit(fn, unit, index, *args))
            # Two per thread: one running, one ready, so no thread waits on the scan.
            while len(queued) > 2 * jobs or (queued and queued[0].done()):
                yield queued.popleft().result()
        while queued:
            yield queued.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_processes(fn: UnitFn, tasks: Iterable[Task], jobs: int, *args: Any) -> Iterator[dict[str, Any]]:
    """Run ``fn(unit, index, *args)`` on ``jobs`` joblib/loky worker processes, in task order.

    Like :func:`run_threads`, the error raised is the first in task order (joblib alone raises
    whichever unit fails first in time, so ``--on-bad-record error`` could name a later
    record from run to run). A worker that dies surfaces as
    ``concurrent.futures.BrokenExecutor`` (the pipeline turns it into a ConvertError that
    says to ``--resume``).
    """
    from joblib import Parallel, delayed

    calls = (delayed(_outcome)(fn, unit, index, *args) for unit, index in tasks)
    results = Parallel(n_jobs=jobs, return_as="generator", pre_dispatch="n_jobs", batch_size=1)(calls)
    try:
        for ok, value in results:
            if not ok:
                raise value
            yield value
    finally:
        # Stopped early (an error, Ctrl-C): cancel the rest without joblib's warning about
        # unused results, so the error stays the one line the user reads.
        with warnings.catch_warnings():
            # joblib's Parallel._warn_exit_early: "N tasks have been successfully executed but not
            # used" and/or "N tasks which were still being processed ... have been cancelled".
            warnings.filterwarnings("ignore", message=r"\d+ tasks (have been|which were)", category=UserWarning)
            results.close()


def _outcome(fn: UnitFn, unit: Any, index: int, *args: Any) -> tuple[bool, Any]:
    """``(True, fn(...))``, or ``(False, the exception)``: errors travel back as values, in order."""
    try:
        return True, fn(unit, index, *args)
    except Exception as exc:  # re-raised in the parent, in task order
        return False, exc
