"""The worker side of ``--scheduler`` (see :mod:`convert.cluster`): the probe, the run token, one unit.

What a dask worker runs, reached through :mod:`convert._remote` by name at run time: the
start-up check (:func:`worker_check`, :func:`code_identity`) and :func:`execute_unit`, which
converts a unit in a scratch directory and publishes it only while its run's token is
current. The converter side (:mod:`convert.cluster`) imports this module, never the reverse.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
import secrets
import shutil
import socket
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import shards as fmt
from .fastx import unit_bytes
from .tokenizers import TokenizerError, load_tokenizer
from .unit import ConvertError, convert_unit

__all__ = [
    "StaleRunError",
    "TOKEN_FILE",
    "code_identity",
    "run_dir",
    "current_token",
    "worker_check",
    "execute_unit",
]

# The current run's token, in ``staging/.units``: a worker of another run publishes nothing.
TOKEN_FILE = "run-token.json"


class StaleRunError(ConvertError):
    """A worker's run was superseded by a later converter run; it publishes nothing."""


# ----------------------------------------------------------------------------- identity


@lru_cache(maxsize=1)
def code_identity() -> str:
    """``<version>+src.<sha256[:12]>`` of this process's converter source (``convert/*.py``).

    Two processes with the same identity run the same unit code, whatever their installed
    version strings say (an editable install and a PYTHONPATH checkout can differ).
    """
    h = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        version = importlib.metadata.version("readshard")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"{version}+src.{h.hexdigest()[:12]}"


# ----------------------------------------------------------------------------- worker side


def run_dir(staging: Path, token: str) -> Path:
    """This run's directory in ``staging``: workers build their units in scratch directories inside it."""
    return staging / ".units" / f".run-{token}"


def current_token(staging: Path) -> str | None:
    """The token of the run that owns ``staging`` now (None if unreadable)."""
    try:
        with open(staging / ".units" / TOKEN_FILE, encoding="utf-8") as f:
            data = json.load(f)
        return str(data["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_token(staging: Path, token: str) -> None:
    if current_token(staging) != token:
        raise StaleRunError(
            f"{staging} now belongs to a later converter run; this worker's unit from run {token[:8]} is dropped"
        )


def worker_check(inputs: list[str], staging: str, token: str, tokenizer: str, tokenizer_sha256: str) -> list[str]:
    """The start-up probe on one worker: what keeps it from running this conversion (empty: nothing).

    It must read every input, see this run's token in ``staging`` and write there, and load
    ``tokenizer`` with the converter's sha256 (a path to a different file would silently
    change the token ids).
    """
    problems: list[str] = []
    for path in inputs:
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            problems.append(f"cannot read input {path} ({exc.strerror or exc})")
    stag = Path(staging)
    if current_token(stag) != token:
        problems.append(
            f"does not see this run's staging directory {stag} (no matching {TOKEN_FILE}): it must be on a "
            "filesystem all nodes share, mounted at the same path"
        )
    else:
        probe = run_dir(stag, token) / f".probe-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            probe.unlink()
        except OSError as exc:
            problems.append(f"cannot write into {probe.parent} ({exc.strerror or exc})")
    if tokenizer:
        try:
            sha = load_tokenizer(tokenizer).info["sha256"]
        except TokenizerError as exc:
            problems.append(f"cannot load tokenizer {tokenizer!r} ({exc})")
        else:
            if sha != tokenizer_sha256:
                problems.append(f"tokenizer {tokenizer!r} has sha256 {sha[:12]}…, the converter's has {tokenizer_sha256[:12]}…")
    return problems


def execute_unit(blob: bytes, staging: str, token: str) -> dict[str, Any]:
    """Convert one unit in a private scratch directory, then publish it into ``staging``.

    ``blob`` is ``pickle.dumps((unit, shard_index, settings, absolute input path))`` made by the converter of
    this run (it reaches the worker as opaque bytes so that unpickling happens here, where
    a failure is a task error; see :mod:`convert._remote`). The shard, quarantine parts
    and unit record are renamed into place only if the run token is still current; a
    worker whose run directory is gone publishes nothing.

    Raises:
        StaleRunError: a later converter run took over the staging directory.
    """
    unit, index, settings, path = pickle.loads(blob)  # noqa: S301 - bytes made by this run's converter, not a file
    stag = Path(staging)
    _check_token(stag, token)
    if unit.data is None:
        # Read the byte range at the absolute path (a worker's cwd is not the converter's), but
        # keep unit.file as typed: it is recorded in the shard and quarantine, as with --jobs.
        unit = replace(unit, data=unit_bytes(replace(unit, file=path)))
    scratch = run_dir(stag, token) / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}"
    try:
        scratch.mkdir()  # never parents=True: a missing run dir means this run is over
        (scratch / ".units").mkdir()
    except FileNotFoundError:
        raise StaleRunError(f"the run directory of run {token[:8]} in {stag} is gone; this unit is dropped") from None
    try:
        record = convert_unit(unit, index, replace(settings, staging=str(scratch), parent_pid=0))
        moves = [
            (scratch / fmt.shard_name(index), stag / fmt.shard_name(index)),
            (scratch / ".units" / f"q-{index:05d}.fa", stag / ".units" / f"q-{index:05d}.fa"),
            (scratch / ".units" / f"q-{index:05d}.tsv", stag / ".units" / f"q-{index:05d}.tsv"),
            (scratch / ".units" / f"q-{index:05d}.ends", stag / ".units" / f"q-{index:05d}.ends"),
            (scratch / ".units" / f"u-{index:05d}.json", stag / ".units" / f"u-{index:05d}.json"),  # last: marks done
        ]
        _check_token(stag, token)
        for src, dst in moves:
            try:
                os.replace(src, dst)
            except FileNotFoundError:
                raise StaleRunError(f"run {token[:8]} in {stag} was superseded while publishing unit {index}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return record
