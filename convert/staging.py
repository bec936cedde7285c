"""The staging directory beside ``--out``: its lock, its holder, and publishing it.

Shared by :mod:`convert.pipeline` (a conversion) and :mod:`convert.repair` (``--resume`` on a
published dataset), which both take the staging's lock before they look at ``--out``, and by
every run's first step, :func:`finish_publish`, which finishes or undoes an interrupted
publish. This module imports neither of them.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any

import shards as fmt
from .paths import check_replaceable, is_dataset, make_dir, open_lock, trash_dir
from .unit import ConvertError

__all__ = [
    "staging_dir",
    "advised_command",
    "rebuild_command",
    "holder_text",
    "locked_message",
    "lock_holder",
    "lock_staging",
    "hold_staging",
    "head_sha256",
    "complete",
    "finish_publish",
]


def staging_dir(out: str | os.PathLike[str]) -> Path:
    """The staging directory used for ``--out OUT``."""
    out = Path(out).resolve()
    return out.parent / f".{out.name}.readshard-partial"


def advised_command(opts: Any, *, add: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> str:
    """The command the user ran with flags dropped and added, quoted: ``"`python -m convert r.fa ... --resume`"``.

    ``opts`` is a :class:`convert.pipeline.ConvertOptions` (only its ``command`` is read).
    Without ``opts.command`` (a library call) it says so in words.
    """
    if opts.command is None:
        words = " and ".join(f"without {d}" for d in drop) + (" and " if drop and add else "")
        return f"the same command {words}{' with ' + ' '.join(add) if add else ''}".rstrip()
    import shlex

    argv = [a for a in opts.command if a not in drop and a not in add]
    return "`" + shlex.join(["python", "-m", "convert", *argv, *add]) + "`"


def rebuild_command(manifest: dict[str, Any], out: Path, opts: Any = None) -> str:
    """The ``--overwrite`` command that converts ``out`` anew with the settings its manifest records.

    For a dataset ``--resume`` cannot repair (its manifest, not a shard, is damaged). The
    user's own command (``opts.command``) is the base where there is one; a setting it does
    not give is added from the manifest, so the command rebuilds the same dataset. The
    mapping is not recorded (only its hash): ``TSV`` stands for it where it was not given.
    """
    import shlex

    from .labels import DEFAULT_HEADER_REGEX

    src = manifest.get("source", {})
    names = [str(n) for n in src.get("inputs", [])] or ["INPUT"]
    own = opts is not None and bool(opts.command)
    # The manifest records the inputs' file names only: the command runs where they are.
    argv = [a for a in opts.command if a != "--resume"] if own else [*names, "--out", str(Path(out).resolve())]
    given = set(argv)
    settings = [("--tokenizer", manifest["tokenizer"].get("file") if manifest["tokenizer"].get("name") is None
                 else manifest["tokenizer"]["name"]), ("--max-length", manifest["max_length"]),
                ("--reads-per-shard", src.get("reads_per_shard")), ("--layout", manifest.get("layout"))]
    if src.get("header_regex") not in (None, DEFAULT_HEADER_REGEX):
        settings.append(("--header-regex", src["header_regex"]))
    add = [w for flag, value in settings if flag not in given and value is not None for w in (flag, str(value))]
    tail = [] if "--mapping" in given else ["--mapping", "TSV"]
    text = "`" + shlex.join(["python", "-m", "convert", *argv, *add, *tail, "--overwrite"]) + "`"
    where = "" if own else f" in the directory of {', '.join(names)}"
    return text + where + (", TSV being the mapping of class ids to labels it was made with" if tail else "")


def holder_text(raw: bytes) -> str:
    """``pid 123, started 2026-12-07 05:12:03 UTC`` from a lock's ``pid start-time`` text."""
    pid, _, started = raw.decode(errors="replace").strip().partition(" ")
    return f"pid {pid or '?'}" + (f", started {started.strip()}" if started.strip() else "")


def locked_message(holder: str, staging: Path) -> str:
    """The refusal when ``holder`` (a live converter) holds ``staging``'s lock."""
    return (
        f"another converter ({holder}) holds {staging}: it is converting, repairing or publishing the same "
        "--out now. Wait for it to finish (or stop it), then rerun this command."
    )


def _read_holder(fd: int) -> str:
    """The holder of a lock this process could not take (its text is written just after the lock)."""
    deadline = time.monotonic() + 1.0
    while True:
        raw = os.pread(fd, 256, 0)
        if raw.strip() or time.monotonic() > deadline:
            return holder_text(raw)
        time.sleep(0.02)


def lock_holder(directory: Path) -> str | None:
    """Who holds ``directory/.lock`` (``pid N, started T``) if a live converter does, else None."""
    try:
        fd = os.open(directory / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _read_holder(fd)
    finally:
        os.close(fd)  # also drops the probe's shared lock


def lock_staging(staging: Path) -> int:
    """Lock ``staging/.lock`` (exclusive, not waiting) and write ``pid start-time`` into it."""
    fd = open_lock(staging / ".lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise ConvertError(locked_message(holder, staging)) from None
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    os.pwrite(fd, f"{os.getpid()} {started}".encode(), 0)
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


def hold_staging(staging: Path) -> tuple[int, bool]:
    """Create ``staging`` if absent and lock it; return (lock fd, whether this call created it).

    Every converter run (convert, resume, repair) takes this lock before it looks at
    ``--out``, staging or trash, so two runs never decide on the same state. A lock won on a
    file that is no longer the staging's lock (its holder published or removed that staging
    meanwhile) is worthless: look again.

    Raises:
        ConvertError: another converter holds it (naming its pid and start time).
        UnsafePathError: ``staging`` or its lock is a link or another odd file.
    """
    for _ in range(50):
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(staging)
            created = True
        except FileExistsError:
            make_dir(staging)  # refuses a link or a file there
            created = False
        try:
            fd = lock_staging(staging)
        except FileNotFoundError:  # removed by its holder between mkdir and open
            continue
        if _same_file(fd, staging / ".lock"):
            return fd, created
        os.close(fd)
    raise ConvertError(f"could not lock {staging}: other converters keep replacing it; rerun this command")


HEAD_BYTES = 1 << 20


def head_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's first MiB: with its size, a cheap check that an input is the same file."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()


# ----------------------------------------------------------------- interrupted publishes

# What a published (or half-removed) dataset directory holds: nothing else is ever removed.
_DATASET_FILE = re.compile(
    r"(shard-\d{5}\.h5|manifest\.json|report\.json|quarantine\.(fa|tsv)|\.lock|\.[\w.-]+\.tmp)"
)


def _say(message: str) -> None:
    print(f"readshard: {message}", file=sys.stderr)


def complete(directory: Path) -> tuple[bool, str]:
    """Whether ``directory`` is a complete dataset: manifest, report and every shard at its size.

    Cheap (no hashing): it decides whether leftovers of a publish may go, not whether the
    shards' contents are intact (``--resume`` and ``verify`` check that).
    """
    if not is_dataset(directory):
        return False, "it has no readshard manifest.json"
    try:
        manifest = fmt.read_manifest(directory)
    except fmt.FormatError as exc:
        return False, str(exc).split(". ")[0]
    if not (directory / fmt.REPORT_NAME).is_file():
        return False, f"{fmt.REPORT_NAME} is missing"
    for entry in manifest["shards"]:
        state = fmt.check_shard(directory / entry["file"], entry)  # no hashing: see above
        if state.problem == "missing":
            return False, f"{entry['file']} is missing"
        if not state.intact:
            return False, f"{entry['file']} is not the size the manifest records"
    return True, f"{len(manifest['shards'])} shards, manifest and report present"


def _finished(staging: Path) -> bool:
    """A staging dir whose conversion was finished and was being published (no plan, no units)."""
    return (staging / fmt.MANIFEST_NAME).is_file() and not any(
        os.path.lexists(staging / n) for n in ("plan.json", ".units")
    )


def _removable(trash: Path) -> bool:
    """A real directory holding only a dataset's files (whole, or partly removed): ours to remove."""
    try:
        if not stat.S_ISDIR(os.lstat(trash).st_mode):
            return False
        return all(_DATASET_FILE.fullmatch(e.name) and e.is_file(follow_symlinks=False) for e in os.scandir(trash))
    except OSError:
        return False


def _gib(path: Path) -> str:
    total = sum(e.stat(follow_symlinks=False).st_size for e in os.scandir(path))
    return f"{total / 2**30:.2f} GiB"


def finish_publish(out: Path, staging: Path) -> bool:
    """Finish or undo what an interrupted publish left (the caller holds the staging's lock).

    * a finished staging dir (killed while it was being renamed to ``--out``) is published:
      rolled forward, the old dataset moved aside first;
    * with ``--out`` missing, the old dataset moved aside is put back (rolled back);
    * the moved-aside old dataset and a stale ``.lock`` in ``--out`` are removed, but only
      once ``--out`` is checked complete (:func:`complete`); otherwise they are kept and the
      user is told why. Every action is printed.

    Returns:
        True if ``staging`` was published (its lock moved with it: the caller locks again).

    Raises:
        ConvertError: a live converter is publishing ``--out`` now, or the finished staging
            is damaged.
    """
    holder = lock_holder(out)
    if holder is not None:
        raise ConvertError(locked_message(holder, out))
    trash = trash_dir(out)
    moved = False
    if _finished(staging):
        ok, why = complete(staging)
        if not ok:
            raise ConvertError(
                f"{staging} holds a finished conversion that was being published to {out}, but {why}; "
                f"convert again with --overwrite (it discards {staging})"
            )
        if os.path.lexists(out):
            check_replaceable(out)  # a dataset or an empty directory only, as when the run started
            _drop_trash(trash, out)
            os.replace(out, trash)
        os.replace(staging, out)
        moved = True
        _say(f"published {out} from {staging}: the run that converted it was interrupted while publishing ({why})")
    if os.path.lexists(trash):
        _tidy_trash(trash, out)
    lock = out / ".lock"
    if os.path.isdir(out) and os.path.lexists(lock):
        ok, why = complete(out)
        if ok:
            lock.unlink()
            if not moved:
                _say(f"removed the stale lock {lock} left by an interrupted publish ({out} is complete: {why})")
    return moved


def _tidy_trash(trash: Path, out: Path) -> None:
    """Remove the old dataset moved aside by a publish, or put it back when ``--out`` is gone."""
    if not os.path.lexists(out):
        ok, why = complete(trash)
        if ok:
            os.replace(trash, out)
            _say(f"restored the previous dataset {out} from {trash}, where an interrupted publish had moved it ({why})")
        else:
            _say(f"warning: {out} is missing and {trash} holds an incomplete dataset ({why}); it is kept as it is")
        return
    ok, why = complete(out)
    if not ok:
        _say(f"warning: kept {trash}, the dataset an interrupted publish replaced: {out} is not complete ({why}). "
             f"Repair {out} with --resume; remove {trash} once you no longer need it")
        return
    size = _drop_trash(trash, out)
    _say(f"removed {trash} ({size}), the previous dataset an interrupted publish had left beside {out} "
         f"({out} is complete: {why})")


def _drop_trash(trash: Path, out: Path) -> str:
    """Remove the moved-aside old dataset ``trash`` (only a dataset's files); return the space freed."""
    if not os.path.lexists(trash):
        return "0.00 GiB"
    if not _removable(trash):
        raise ConvertError(
            f"{trash} (where the converter moves the dataset that {out} replaces) holds files that are not a "
            "dataset's; the converter does not remove them. Move them away, then rerun this command."
        )
    size = _gib(trash)
    shutil.rmtree(trash)
    return size
