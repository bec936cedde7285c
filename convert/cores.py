"""Idle cores lent to an encode in progress.

With ``--jobs N`` on threads, N units are converted at once, but not always: the max-length
sample is encoded before any unit starts, and at the end of a run fewer units than threads
are left, so cores would sit idle while the last unit encodes alone. An encode therefore
asks :func:`claim` for the cores no other encode of this process uses right now (up to the
run's budget, :func:`set_budget`) and splits its rows over them (:func:`run_parts`). Rows
are independent, so the result is the same however they are split.

The budget is 1 unless the converter sets it (``--jobs`` in its own process); a worker
process of ``--parallel processes`` keeps 1, so processes never oversubscribe the machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

__all__ = ["set_budget", "budget", "claim", "run_parts"]

_lock = threading.Lock()
_budget = 1
_in_use = 0
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def set_budget(cores: int) -> None:
    """Let this process's encodes use up to ``cores`` cores together (at least 1)."""
    global _budget
    with _lock:
        _budget = max(1, int(cores))


def budget() -> int:
    """The current budget (see :func:`set_budget`)."""
    return _budget


@contextmanager
def claim(want: int) -> Iterator[int]:
    """Claim up to ``want`` cores (always at least 1: the caller's own); yield how many."""
    global _in_use
    with _lock:
        got = max(1, min(int(want), _budget - _in_use))
        _in_use += got
    try:
        yield got
    finally:
        with _lock:
            _in_use -= got


def run_parts(fn: Callable[[int, int], None], n: int, parts: int) -> None:
    """Run ``fn(lo, hi)`` over ``parts`` contiguous ranges of ``range(n)``.

    The first range runs in the calling thread, the others on helper threads. Returns once
    all are done; if any failed, raises the error of the first failed range (in range order).
    """
    parts = max(1, min(parts, n))
    if parts == 1:
        fn(0, n)
        return
    bounds = [n * k // parts for k in range(parts + 1)]
    futures = [_helpers().submit(fn, bounds[k], bounds[k + 1]) for k in range(1, parts)]
    try:
        fn(bounds[0], bounds[1])
    finally:
        errors = [f.exception() for f in futures]  # waits for every helper before returning
    for exc in errors:
        if exc is not None:
            raise exc


def _helpers() -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < _budget - 1:  # first use, or a later run with a larger budget
            if _pool is not None:
                _pool.shutdown(wait=False)  # its running parts finish; new ones go to the new pool
            _pool_size = max(1, _budget - 1)
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="readshard-encode")
        return _pool
