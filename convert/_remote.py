"""The two functions a dask worker runs for ``--scheduler``, shipped to it *by value*.

Only the standard library is imported at module level, and :mod:`convert.cluster` pickles
this module by value (``cloudpickle.register_pickle_by_value``), so a worker can always
load these functions, even one that cannot import readshard. They import readshard inside
their bodies: a missing or broken install becomes an ordinary task error that reaches the
converter within seconds. (A task whose function or arguments the worker cannot unpickle
instead wedges that worker's connection and the run waits forever; unit arguments therefore
travel as opaque bytes, see :func:`convert.clusterworker.execute_unit`.)
"""

from __future__ import annotations

from typing import Any

__all__ = ["probe", "run_unit"]


def _where() -> str:
    import os
    import socket
    import sys

    return f"host {socket.gethostname()} (pid {os.getpid()}, python {sys.executable})"


def probe(inputs: list[str], staging: str, token: str, tokenizer: str, tokenizer_sha256: str) -> dict[str, Any]:
    """Readshard's identity in this process, and what keeps it from running this conversion."""
    try:
        from convert import clusterworker

        identity = clusterworker.code_identity()
    except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
        return {"where": _where(), "error": f"cannot import readshard ({type(exc).__name__}: {exc})"}
    try:
        problems = clusterworker.worker_check(inputs, staging, token, tokenizer, tokenizer_sha256)
    except Exception as exc:  # noqa: BLE001 - e.g. another readshard whose check differs
        problems = [f"the check failed ({type(exc).__name__}: {exc})"]
    return {"where": _where(), "identity": identity, "problems": problems}


def run_unit(blob: bytes, staging: str, token: str) -> dict[str, Any]:
    """Convert one unit on this worker and publish it into ``staging`` (see ``execute_unit``)."""
    try:
        from convert import clusterworker
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(
            f"the dask worker on {_where()} cannot import readshard ({type(exc).__name__}: {exc}). "
            "Install the same readshard on every worker, then rerun the converter with --resume."
        ) from None
    return clusterworker.execute_unit(blob, staging, token)
