"""The conversion pipeline: inputs -> record-aligned units -> workers -> shards -> dataset.

Crash safety, in order of what is written:

1. Everything goes to a staging directory beside the output,
   ``<parent>/.<name>.readshard-partial/``, locked with ``flock`` so two converters cannot
   share it. Every run (convert, ``--resume``, repair) takes that lock before it looks at
   ``--out``, so a second run is told who holds it (pid, start time), and what an
   interrupted publish left is finished or undone first (:func:`convert.repair.finish_publish`).
   Nothing appears at ``--out`` until the dataset is complete.
2. A worker (a thread or a process, see :mod:`convert.executors`) builds the shard in memory,
   writes ``.shard-NNNNN.h5.tmp``, renames it to ``shard-NNNNN.h5``, then writes its
   quarantine parts and, last, its unit record ``.units/u-NNNNN.json`` (shard entry +
   counts). The converter fsyncs each shard as its unit finishes (the workers do not wait
   on the disk; dask workers sync their own). A unit is done iff its record and parts exist
   and the shard's size and sha256 match it, so a unit whose unsynced writes a power loss
   damaged is redone; ``--resume`` redoes every other unit as well. Workers hold
   ``.units/.workers.lock`` shared while writing and stop if their converter is gone, and a
   new converter waits for that lock: pool workers orphaned by a killed converter never
   write beside a ``--resume``.
   A worker process that dies (killed, out of memory) ends the run with a
   :class:`ConvertError` saying to ``--resume``. With ``--scheduler`` (dask workers, not
   children of the converter) a run token replaces this pid guard: see :mod:`convert.cluster`.
3. When all units are done: ``quarantine.fa``/``quarantine.tsv``, ``report.json``, then
   ``manifest.json``; the staging directory is renamed to ``--out`` (atomic on one
   filesystem). A crash at any point leaves either no dataset or a complete one; a full
   disk or unwritable output is a :class:`ConvertError` (nothing published, ``--resume``
   continues). ``benchmarks/crash_resume.py`` checks this with SIGKILL at random moments.

Units depend only on the input and ``--reads-per-shard``, and each is converted by the same
pure function, so shards, hashes and the manifest are identical for any ``--jobs``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import sys
import time
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import cores
import shards as fmt
from shards import MAX_LENGTH_LIMIT
from .options import validate as validate_options
from .failfast import (
    DEFAULT_MIN_WRITTEN_FRACTION,
    PROBE_RECORDS,
    Probe,
    TooManySkipped,
    check_probe,
    check_written_fraction,
    probe,
)
from .fastparse import AVAILABLE as FASTPARSE_AVAILABLE
from .fastx import InputError, Unit, iter_units, parse_unit, sniff, unit_bytes
from .labels import DEFAULT_HEADER_REGEX, LabelMap, MappingError, compile_header_regex, read_mapping
from .paths import (
    UnsafePathError,
    check_protected,
    check_replaceable,
    check_staging,
    make_dir,
    open_lock,
    publish,
    resolve_out,
    trash_dir,
)
from .unit import (
    MAX_RECORD_BYTES,
    QUARANTINE_MAX_BYTES,
    SKIP_REASONS,
    BadRecordError,
    ConvertError,
    Rows,
    Settings,
    classify,
    convert_unit,
    peak_rss_mb as _peak_rss_mb,
    remember_tokenizer,
    rows_default,
)
from .executors import choose_parallel, run_processes, run_serial, run_threads
from .repair import resume_complete
from .staging import advised_command, finish_publish, head_sha256, hold_staging, lock_staging, staging_dir
from .tokenizers import TokenizerError, choose_max_length, load_tokenizer

__all__ = [
    "ConvertError",
    "BadRecordError",
    "ConvertOptions",
    "convert",
    "staging_dir",
    "usable_cores",
    "Settings",
    "lock_staging",
    "hold_staging",
    "advised_command",
    "head_sha256",
    "ERRORS",
]

AUTO_SAMPLE = 20000
ORPHAN_WAIT_S = 600.0


ERRORS = (
    ConvertError, BadRecordError, InputError, MappingError, TokenizerError, fmt.FormatError, UnsafePathError,
    TooManySkipped,
)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; the default ``--jobs``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class ConvertOptions:
    """Everything that defines a conversion (the CLI and config file fill this in)."""

    inputs: list[str]
    out: str
    mapping: str | None = None
    header_regex: str = DEFAULT_HEADER_REGEX
    tokenizer: str = "metagene-1"
    max_length: int | str = "auto"
    layout: str = "mmap"
    compression: str | None = None  # codec of --layout compressed (gzip when None); an error with mmap
    reads_per_shard: int = 65536
    jobs: int = field(default_factory=usable_cores)
    parallel: str = "auto"  # how --jobs runs: auto, threads or processes (convert.executors)
    scheduler: str | None = None
    on_bad_record: str = "skip"
    max_record_bytes: int = MAX_RECORD_BYTES
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    min_written_fraction: float = DEFAULT_MIN_WRITTEN_FRACTION
    quarantine_max_bytes: int = QUARANTINE_MAX_BYTES
    # Internal: write only one side of a --split (see convert.split): {"side", "fractions", "seed"}.
    split: dict[str, Any] | None = None
    # The option fields given on the command line or in --config (None: not known, e.g. a
    # library call; a value other than the default then counts as given). --resume compares them.
    given: frozenset[str] | None = None
    # The command's arguments (after ``python -m convert``), for advice that is a command to run.
    command: list[str] | None = None


# ----------------------------------------------------------------------------- parent side


def _unit_done(staging: Path, index: int) -> dict[str, Any] | None:
    rec_path = staging / ".units" / f"u-{index:05d}.json"
    shard = staging / fmt.shard_name(index)
    if not rec_path.is_file():
        return None
    # The quarantine parts too: a crash while the finished run removed .units can leave a
    # unit record whose parts are already gone.
    if not all((staging / ".units" / f"q-{index:05d}.{ext}").is_file() for ext in ("fa", "tsv", "ends")):
        return None
    try:
        record = json.loads(rec_path.read_text())
    except ValueError:
        return None
    entry = record["shard"]
    if not fmt.check_shard(shard, entry, hash=True).intact:
        return None
    return record


def _drop_staging(staging: Path) -> None:
    """Remove a staging dir whose contents this run may discard (best effort: the run's own error wins)."""
    try:
        _remove_staging(staging)
    except OSError:
        pass


def _wait_for_orphans(staging: Path, timeout: float = ORPHAN_WAIT_S) -> None:
    """Wait until no worker of an earlier (killed) converter is still writing a unit.

    Workers hold ``.units/.workers.lock`` shared while they write (see :func:`convert_unit`);
    taking it exclusively once proves none is left. Orphans finish their unit and stop.
    """
    fd = open_lock(staging / ".units" / ".workers.lock")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConvertError(
                        f"worker processes of an earlier, interrupted converter are still writing to "
                        f"{staging} after {timeout:.0f} s; stop them (they run "
                        "joblib.externals.loky.backend.popen_loky_posix) and rerun with --resume"
                    ) from None
                time.sleep(0.05)
    finally:
        os.close(fd)


def _unit_settings(opts: ConvertOptions, lm: LabelMap) -> dict[str, Any]:
    """The settings a plan records beside inputs and tokenizer (shared by the plan and its early check)."""
    return {
        "layout": opts.layout,
        "compression": opts.compression or "gzip",
        "reads_per_shard": opts.reads_per_shard,
        "header_regex": opts.header_regex,
        "mapping_sha256": lm.sha256,
        "max_record_bytes": opts.max_record_bytes,
        "split": opts.split,
    }


def _plan(opts: ConvertOptions, tok_info: dict[str, Any], max_length: int, lm: LabelMap) -> dict[str, Any]:
    inputs = []
    for p in opts.inputs:
        st = os.stat(p)
        inputs.append({"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return {
        "inputs": inputs,
        "tokenizer_sha256": tok_info["sha256"],
        "tokenizer": tok_info["name"],
        "max_length": max_length,
        **_unit_settings(opts, lm),
    }


def _auto_max_length(opts: ConvertOptions, tok, heads: list["Rows"] | None = None) -> tuple[int, int]:
    """Tokenize the first AUTO_SAMPLE good reads of the inputs and pick L (deterministic).

    ``heads``: the inputs' first records parsed by numba (:func:`_head_rows`, default header
    format), else the record path reads them.
    """
    if heads is not None:
        seqs, offsets = _good_reads(heads, AUTO_SAMPLE)
    else:
        seqs, offsets = _good_reads_slow(opts)
    # Only the untruncated counts matter here; a tiny L keeps the id matrix small.
    _, full = tok.encode(seqs, offsets, 8)
    # Capped: a stored length above 32767 would wrap to a negative int16.
    return min(choose_max_length(full), MAX_LENGTH_LIMIT), int(full.size)


def _good_reads(heads: list["Rows"], limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` written reads of the inputs' heads, as (bases, offsets).

    The bases are a writable uint8 array, as the units' are: the encoder's compiled code for
    read-only bytes would be another specialization to load.
    """
    parts, lens = [], []
    for rows in heads:
        take = min(limit - sum(x.size for x in lens), rows.offsets.size - 1)
        if take <= 0:
            break
        parts.append(np.frombuffer(rows.seqs, dtype=np.uint8)[: rows.offsets[take]])
        lens.append(np.diff(rows.offsets[: take + 1]))
    offsets = np.zeros(sum(x.size for x in lens) + 1, dtype=np.int64)
    if lens:
        np.cumsum(np.concatenate(lens), out=offsets[1:])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8), offsets


def _good_reads_slow(opts: ConvertOptions) -> tuple[bytes, np.ndarray]:
    """:func:`_good_reads` through the per-record path (a custom --header-regex)."""
    parts = bytearray()
    offs = [0]
    for i, path in enumerate(opts.inputs):
        for unit in iter_units(path, i, AUTO_SAMPLE, max_record_bytes=opts.max_record_bytes):
            for rec in parse_unit(unit):
                if rec.problem is None and len(rec.raw) <= opts.max_record_bytes:
                    parts += rec.seq
                    offs.append(len(parts))
                if len(offs) > AUTO_SAMPLE:
                    break
            break
        if len(offs) > AUTO_SAMPLE:
            break
    return bytes(parts), np.asarray(offs, dtype=np.int64)


def _head_rows(opts: ConvertOptions, lm: LabelMap) -> list["Rows"] | None:
    """Each input's first ``max(PROBE_RECORDS, AUTO_SAMPLE)`` records parsed and labeled by
    numba, as the workers will (default header format only; else None)."""
    if opts.header_regex != DEFAULT_HEADER_REGEX or not FASTPARSE_AVAILABLE:
        return None
    s = Settings(tokenizer=opts.tokenizer, max_length=1, header_regex=opts.header_regex, label_map=lm,
                  layout=opts.layout, compression="gzip", on_bad_record="skip", staging="",
                  max_record_bytes=opts.max_record_bytes)
    heads = []
    for i, path in enumerate(opts.inputs):
        for unit in iter_units(path, i, max(PROBE_RECORDS, AUTO_SAMPLE), max_record_bytes=opts.max_record_bytes):
            heads.append(rows_default(unit, unit_bytes(unit), s))
            break
    return heads


def _probe_rows(opts: ConvertOptions, heads: list["Rows"]) -> list[Probe]:
    """:func:`convert.failfast.probe` from parsed heads: the first PROBE_RECORDS records of each input."""
    probes = []
    for path, rows in zip(opts.inputs, heads):
        p = Probe(str(path), records=min(rows.records_in, PROBE_RECORDS))
        for index, line, problem, _, header in rows.bad:
            if index < PROBE_RECORDS:
                p.skipped[problem] += 1
                p.examples.setdefault(problem, (line, header))
        probes.append(p)
    return probes


def convert(opts: ConvertOptions) -> dict[str, Any]:
    """Convert ``opts.inputs`` into a dataset at ``opts.out``; return the report.

    Raises:
        ConvertError, BadRecordError, InputError, MappingError, TokenizerError: with a
        message naming the file (and line) and what to do. Nothing is published at
        ``opts.out`` unless the conversion completes.
    """
    before = cores.budget()
    # --jobs cores for this process's encodes: the max-length sample and, on threads, the
    # last units of the run use the cores no other unit needs (convert.cores).
    cores.set_budget(max(1, int(opts.jobs)) if isinstance(opts.jobs, int) else 1)
    try:
        return _convert(opts)
    finally:
        cores.set_budget(before)


def _check_options(opts: ConvertOptions) -> None:
    """Refuse option values that are wrong whatever is on disk (before anything is looked at)."""
    try:
        validate_options(opts)  # the one place: convert.options, from its option table
    except ValueError as exc:
        raise ConvertError(str(exc)) from None


def _convert(opts: ConvertOptions) -> dict[str, Any]:
    t0 = time.time()
    out = resolve_out(opts.out)  # refuses a symlink or a file at --out before anything else
    _check_options(opts)
    staging = staging_dir(out)
    try:
        check_staging(staging, must_be_ours=True)  # before the lock: never lock a directory that is not ours
    except FileNotFoundError:
        pass  # a running converter changed it meanwhile: the lock below decides
    parents = _missing_parents(staging)
    for _ in range(3):
        try:
            lock_fd, created = hold_staging(staging)
        except OSError as exc:  # read-only or full filesystem, no permission, parent is a file
            raise _io_error(exc, out, staging, started=False) from None
        try:
            if finish_publish(out, staging):
                continue  # the staging was published; its lock went with it: lock afresh
            if opts.resume and not opts.overwrite and (out / fmt.MANIFEST_NAME).is_file() and not _staged(staging):
                try:  # a published dataset: check it, repair damaged shards
                    return resume_complete(opts, out, staging)
                finally:
                    _drop_staging(staging)  # only this or an earlier repair's scratch: no plan
            return _convert_locked(opts, out, staging, t0, created)
        except BaseException as exc:
            if created:
                _clean_after_failure(staging, exc, parents)
            raise
        finally:
            os.close(lock_fd)
    raise ConvertError(f"internal error: {out} changed under this run three times; rerun this command")


def _staged(staging: Path) -> bool:
    """True if ``staging`` holds a started conversion (its plan; shards may follow)."""
    return (staging / "plan.json").is_file()


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, deepest first (a failed run removes them)."""
    missing, p = [], path.parent
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def _clean_after_failure(staging: Path, exc: BaseException, parents: list[Path]) -> None:
    """Remove the staging dir this run created when the run stopped before its conversion began.

    That is, before its plan was written (refused options or inputs, Ctrl-C), or when the
    cluster ran no unit (``discard_staging``): nothing in it is worth a ``--resume``, and
    leaving it would make the next plain run answer "unfinished conversion". A failed write
    (``keep_staging``: disk full, ...) keeps it, as its message says.
    """
    try:
        if getattr(exc, "keep_staging", False) or _converted_any(staging):
            return
        if _staged(staging):
            if not getattr(exc, "discard_staging", False):
                return
            _wait_for_orphans(staging, timeout=30.0)
            if _converted_any(staging):
                return
        _drop_staging(staging)
        for d in parents:
            os.rmdir(d)  # only if empty: fails at the first that holds anything
    except (OSError, ConvertError, UnsafePathError):
        pass  # the run's own error is the one to report


def _converted_any(staging: Path) -> bool:
    """True once a unit finished (also after the finish removed the unit records, before publishing)."""
    return (any(staging.glob("shard-*.h5")) or any((staging / ".units").glob("u-*.json"))
            or (staging / fmt.MANIFEST_NAME).exists())


def _convert_locked(opts: ConvertOptions, out: Path, staging: Path, t0: float, created: bool) -> dict[str, Any]:
    """The conversion itself, with ``staging`` locked by this run (``created``: made by it)."""
    if opts.mapping is None:
        raise ConvertError(
            "--mapping TSV is required: it turns class ids into contiguous labels and names "
            "(columns class_id, tax_id, species)"
        )
    _check_paths(opts, out, staging)
    # An earlier run's staging with anything in it (a plan, or a start a kill or full disk cut short).
    unfinished = _staged(staging) or (not created and bool(set(os.listdir(staging)) - {".lock"}))
    if unfinished and not opts.resume and not opts.overwrite:
        raise ConvertError(
            f"an unfinished conversion to {out} exists in {staging}; continue it with "
            f"{advised_command(opts, add=('--resume',))}, or start over with {advised_command(opts, add=('--overwrite',))}"
        )
    lm = read_mapping(opts.mapping)
    if opts.resume and _staged(staging):
        _check_plan_early(opts, staging, lm)  # before reading any input: other inputs or settings stop here
    for path in opts.inputs:
        sniff(path)  # fail fast on missing, empty, binary or non-FASTA/FASTQ inputs
    rx = compile_header_regex(opts.header_regex)
    tok = load_tokenizer(opts.tokenizer)
    note = getattr(tok, "encoder_note", None)  # e.g. numba missing: say once, in the parent
    if note:
        print(note, file=sys.stderr)
    # Seconds, not hours: a regex or mapping that skips most records stops here (under
    # --on-bad-record error the first bad record stops the run anyway, naming its line).
    heads = _head_rows(opts, lm)
    if opts.on_bad_record == "skip":
        if heads is not None:
            probes = _probe_rows(opts, heads)
        else:
            probes = probe(opts.inputs, lambda rec: classify(rec, rx, lm.label_of),
                           max_record_bytes=opts.max_record_bytes)
        check_probe(probes, float(opts.min_written_fraction), opts.header_regex, opts.mapping, lm.class_ids)
    try:
        return _stage_and_finish(opts, out, staging, lm, tok, heads, t0)
    except OSError as exc:
        err = _io_error(exc, out, staging, started=True)
        err.keep_staging = True  # type: ignore[attr-defined]  # the message says --resume: keep what it needs
        raise err from None


def _stage_and_finish(opts: ConvertOptions, out: Path, staging: Path, lm: LabelMap, tok: Any,
                      heads: list["Rows"] | None, t0: float) -> dict[str, Any]:
    make_dir(staging / ".units")
    _wait_for_orphans(staging)
    if not opts.scheduler:
        # Workers of a killed --scheduler run outlive it; a local run retires their token.
        from .cluster import retire_runs

        retire_runs(staging)
    if not opts.resume and opts.overwrite:
        for child in staging.iterdir():
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    make_dir(staging / ".units")
    if out.exists():  # only with --overwrite (or --resume of such a run): say so for a later --resume
        (staging / ".units" / REPLACES).touch()
    if opts.max_length == "auto":
        max_length, sampled = _auto_max_length(opts, tok, heads)
    else:
        max_length, sampled = int(opts.max_length), 0
    plan = _plan(opts, tok.info, max_length, lm)
    plan_path = staging / "plan.json"
    if opts.resume and plan_path.is_file():
        old = json.loads(plan_path.read_text())
        if old != plan:
            raise ConvertError(_plan_differs(opts, staging, _plan_differences(old, plan)))
    fmt.write_json_atomic(plan_path, plan)
    settings = Settings(
        tokenizer=opts.tokenizer,
        max_length=max_length,
        header_regex=opts.header_regex,
        label_map=lm,
        layout=opts.layout,
        compression=opts.compression or "gzip",
        on_bad_record=opts.on_bad_record,
        staging=str(staging),
        tokenizer_info=tok.info,
        parent_pid=os.getpid(),
        # From the plan: a resumed run writes the same bytes; changed inputs or settings
        # give another identity, which open readers detect.
        dataset_id=fmt.new_dataset_id(plan),
        max_record_bytes=opts.max_record_bytes,
        quarantine_max_bytes=int(opts.quarantine_max_bytes),
        split=opts.split,
        parallel="cluster" if opts.scheduler else _parallel_mode(opts, tok),
        # Local workers leave fsync to this process (_run_units); dask workers, possibly on
        # other machines, sync their own writes.
        sync=bool(opts.scheduler),
    )
    try:
        records = _run_units(opts, settings, staging)
    except BadRecordError:
        # --on-bad-record error: the run ends by design, so the staging dir it created
        # is no unfinished conversion to resume; leaving it would block the next plain run.
        if not opts.resume:
            _wait_for_orphans(staging)
            _remove_staging(staging)
        raise
    except ConvertError as exc:
        if opts.scheduler and not _converted_any(staging):
            exc.discard_staging = True  # type: ignore[attr-defined]  # the cluster ran nothing: nothing to resume
        raise
    return _finish(opts, out, staging, records, settings, lm, t0, sampled)


# Marks a staged conversion that replaces an existing --out (an --overwrite run): --resume
# continues it without --overwrite.
REPLACES = "replaces-out"


_PLAN_NAMES = {"mapping_sha256": "the --mapping file's sha256", "tokenizer_sha256": "the tokenizer's sha256",
               "split": "--split/--seed"}


def _short(value: Any) -> str:
    """A plan value for a message: hashes shortened to 12 hex digits."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return repr(value)


def _plan_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Each setting or input in which ``new`` differs from the staged plan ``old``, in words."""
    out = []
    for key in new:
        if key == "inputs" or new[key] == old.get(key):
            continue
        name = _PLAN_NAMES.get(key, "--" + key.replace("_", "-"))
        out.append(f"{name} is {_short(new[key])} now, {_short(old.get(key))} in the unfinished conversion")
    was, now = old.get("inputs", []), new["inputs"]
    if [i.get("path") for i in was] != [i["path"] for i in now]:
        out.append(f"the inputs are {[i['path'] for i in now]} now, {[i.get('path') for i in was]} in the unfinished conversion")
    else:
        for a, b in zip(was, now):
            for field, what in (("bytes", "size"), ("mtime_ns", "modification time")):
                if a.get(field) != b[field]:
                    out.append(f"input {b['path']} changed since the conversion started ({what} {a.get(field)} -> {b[field]})")
    return out


def _plan_differs(opts: ConvertOptions, staging: Path, differ: list[str]) -> str:
    return (
        f"--resume continues the unfinished conversion in {staging} only with the inputs and settings it was "
        f"started with (other settings or inputs would mix two conversions), but {'; '.join(differ)}. To continue it, "
        "rerun with its own inputs and settings; to start over with these, run "
        f"{advised_command(opts, add=('--overwrite',), drop=('--resume',))}"
    )


def _check_plan_early(opts: ConvertOptions, staging: Path, lm: LabelMap) -> None:
    """Compare the inputs and the settings known without reading an input with the staged plan."""
    try:
        old = json.loads((staging / "plan.json").read_text())
    except (OSError, ValueError):
        return  # rewritten below after the full comparison
    now = {
        "inputs": [{"path": str(p), "bytes": os.stat(p).st_size, "mtime_ns": os.stat(p).st_mtime_ns}
                   if os.path.exists(p) else {"path": str(p), "bytes": None, "mtime_ns": None} for p in opts.inputs],
        "tokenizer": opts.tokenizer,
        **_unit_settings(opts, lm),
    }
    if opts.max_length != "auto":
        now["max_length"] = opts.max_length
    if old.get("tokenizer") != opts.tokenizer and Path(opts.tokenizer).exists():
        now.pop("tokenizer")  # a path: compared by its sha256 once loaded
    differ = _plan_differences(old, now)
    if differ:
        raise ConvertError(_plan_differs(opts, staging, differ))


def _check_paths(opts: ConvertOptions, out: Path, staging: Path) -> None:
    """Refuse, before anything is written, an --out whose writing would destroy what is not ours."""
    protected = [("input", p) for p in opts.inputs] + [("--mapping", opts.mapping)]
    if opts.tokenizer and os.path.exists(opts.tokenizer):
        protected.append(("--tokenizer", opts.tokenizer))
    check_protected(out, staging, protected)
    if out.exists():
        continues = opts.resume and _staged(staging) and (staging / ".units" / REPLACES).is_file()
        if not opts.overwrite and not continues:
            raise ConvertError(_exists_message(opts, out, staging))
        check_replaceable(out)
    check_replaceable(trash_dir(out), "trash directory")
    check_staging(staging, must_be_ours=True)


def _exists_message(opts: ConvertOptions, out: Path, staging: Path) -> str:
    if _staged(staging) and (staging / ".units" / REPLACES).is_file():  # an interrupted --overwrite
        return (
            f"{out} already exists and an interrupted conversion that replaces it is staged in {staging}; continue "
            f"it with {advised_command(opts, add=('--resume',), drop=('--overwrite',))} (the old dataset is kept "
            f"until the new one is complete), or start it over with {advised_command(opts, add=('--overwrite',))}"
        )
    if opts.resume and _staged(staging):  # a staged conversion not known to replace --out
        return (
            f"{out} already exists and {staging} holds an unfinished conversion to it; to finish that conversion "
            f"and replace {out} with it run {advised_command(opts, add=('--resume', '--overwrite'))} (the old "
            "dataset is kept until the new one is complete)"
        )
    return (
        f"{out} already exists; to check it and re-convert damaged shards run "
        f"{advised_command(opts, add=('--resume',), drop=('--overwrite',))}, to replace it run "
        f"{advised_command(opts, add=('--overwrite',), drop=('--resume',))} (the old one is kept until the new "
        "dataset is complete)"
    )


def _remove_staging(staging: Path) -> None:
    """Remove a staging dir this run created (its own files only; never follows symlinks)."""
    for child in staging.iterdir():
        if child.name != ".lock":
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    (staging / ".lock").unlink(missing_ok=True)
    staging.rmdir()


def _io_error(exc: OSError, out: Path, staging: Path, *, started: bool) -> ConvertError:
    """A one-paragraph ConvertError for a failed read or write (disk full, read-only, ...)."""
    where = exc.filename or staging
    then = (
        "then rerun the same command with --resume (finished shards are kept)"
        if started
        else "then rerun the command"
    )
    if exc.errno == errno.ENOSPC:
        return ConvertError(f"disk full while writing {where}: nothing was published at {out}. Free space, {then}.")
    return ConvertError(
        f"cannot write {where}: {exc.strerror or exc}. Nothing was published at {out}; fix the problem "
        f"(permissions, a read-only or missing directory), {then}."
    )


def _parallel_mode(opts: ConvertOptions, tok: Any) -> str:
    """serial, threads or processes (see convert.executors); threads share ``tok``."""
    jobs = max(1, int(opts.jobs))
    gil_free = (
        jobs > 1
        and opts.header_regex == DEFAULT_HEADER_REGEX
        and FASTPARSE_AVAILABLE
        and opts.layout == "mmap"  # gzip/lzf chunks compress under h5py's global lock
        and getattr(tok, "gil_free", False)
        and opts.reads_per_shard >= getattr(tok, "fast_min_reads", 0)
    )
    mode = choose_parallel(opts.parallel, jobs, gil_free)
    if mode != "processes":
        remember_tokenizer(opts.tokenizer, tok)  # this process's units reuse the parent's tables (this file's)
    return mode


def _run_units(opts: ConvertOptions, settings: Settings, staging: Path) -> list[dict[str, Any]]:
    from tqdm import tqdm

    total_bytes = sum(os.path.getsize(p) for p in opts.inputs)
    bar = tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        desc="convert",
        disable=not opts.progress,
        file=sys.stderr,
        smoothing=0.1,
    )
    records: dict[int, dict[str, Any]] = {}
    reads_done = skipped_done = 0
    start = time.time()

    def units() -> Iterator[tuple[Unit, int]]:
        index = 0
        for fi, path in enumerate(opts.inputs):
            for unit in iter_units(path, fi, opts.reads_per_shard, progress=bar.update,
                                   max_record_bytes=opts.max_record_bytes):
                done = _unit_done(staging, index) if opts.resume else None
                if done is not None:
                    # Checked, but maybe never synced (an earlier run's workers may not sync).
                    fmt.fsync_file(staging / fmt.shard_name(index), drop_cache=True)
                    records[index] = done
                else:
                    yield unit, index
                index += 1

    jobs = max(1, int(opts.jobs))
    try:
        if opts.scheduler:
            # Imported only here: dask is the optional `cluster` extra (see convert/cluster.py).
            from .cluster import run_units_on_cluster

            results: Any = run_units_on_cluster(opts.scheduler, units(), settings, staging, opts.inputs)
        elif settings.parallel == "serial":
            results = run_serial(convert_unit, units(), settings)
        elif settings.parallel == "threads":
            results = run_threads(convert_unit, units(), jobs, settings)
        else:
            results = run_processes(convert_unit, units(), jobs, settings)
        for rec in results:
            idx = fmt.shard_index_from_name(rec["shard"]["file"])
            if not settings.sync:
                # Here, not in the worker: the workers go on converting while this thread
                # waits for the disk, and every shard is durable before anything is published.
                fmt.fsync_file(staging / fmt.shard_name(idx), drop_cache=True)
            records[idx] = rec
            reads_done += rec["records_in"]
            skipped_done += rec["records_in"] - rec["written"] - rec.get("other_split", 0)
            bar.set_postfix_str(
                f"{reads_done / max(time.time() - start, 1e-9):,.0f} reads/s, {skipped_done:,} skipped", refresh=False
            )
    except BrokenExecutor as exc:
        # joblib/loky: a worker died (killed, out of memory, segfault); its unit is not done.
        raise ConvertError(
            f"a worker process died while converting ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]} {_worker_exit_codes(exc)}). Nothing was published at "
            f"{opts.out}; finished shards are kept in {staging}: continue with "
            f"{advised_command(opts, add=('--resume',), drop=('--overwrite',))} (with fewer --jobs or a smaller "
            "--reads-per-shard if memory ran out)."
        ) from None
    finally:
        bar.close()
    return [records[i] for i in sorted(records)]


def _worker_exit_codes(exc: BaseException) -> str:
    codes = [line.strip() for line in str(exc).splitlines() if "exit codes" in line]
    return f"({codes[0].rstrip('.')})" if codes else ""


def _finish(
    opts: ConvertOptions,
    out: Path,
    staging: Path,
    records: list[dict[str, Any]],
    s: Settings,
    lm: LabelMap,
    t0: float,
    sampled: int,
) -> dict[str, Any]:
    """All units are done: merge their parts, write report and manifest, publish ``--out``."""
    if [fmt.shard_index_from_name(r["shard"]["file"]) for r in records] != list(range(len(records))):
        raise ConvertError(f"internal error: missing units in {staging}; rerun with --resume")
    by_reason: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
    for r in records:
        for k, v in r["skipped"].items():
            by_reason[k] += v
    check_written_fraction(sum(r["records_in"] - r.get("other_split", 0) for r in records),
                           sum(r["written"] for r in records), by_reason, float(opts.min_written_fraction), out)
    q_kept = _merge_quarantine(opts, staging, len(records))
    sums = _sum_records(records, lm)
    if sums.totals["records_in"] != sums.totals["written"] + sums.n_skipped + sums.totals["other_split"]:
        raise ConvertError(
            f"internal error: records in ({sums.totals['records_in']}) != written ({sums.totals['written']}) "
            f"+ skipped ({sums.n_skipped}) + other split side ({sums.totals['other_split']}); the dataset was not "
            "published"
        )
    report = _build_report(opts, records, s, lm, sums, q_kept, (staging / fmt.QUARANTINE_NAME).stat().st_size, t0, sampled)
    manifest = _build_manifest(opts, records, s, lm, sums)
    fmt.write_json_atomic(staging / fmt.REPORT_NAME, report)
    fmt.write_manifest(staging, manifest)
    shutil.rmtree(staging / ".units")
    (staging / "plan.json").unlink()
    publish(staging, out)
    (out / ".lock").unlink(missing_ok=True)
    if os.path.lexists(trash_dir(out)):  # publish could not remove the replaced dataset
        print(f"warning: the replaced dataset is still in {trash_dir(out)}; the next run of the converter on "
              f"{out} removes it, or remove it yourself", file=sys.stderr)
    return report


def _merge_quarantine(opts: ConvertOptions, staging: Path, units: int) -> int:
    """Join the units' quarantine parts (FASTA capped at ``--quarantine-max-bytes``); return records kept."""
    q_kept = 0
    with fmt.create_file(staging / fmt.QUARANTINE_NAME, "wb") as qfa, \
            fmt.create_file(staging / "quarantine.tsv", "w") as qtsv:
        qtsv.write("file\tline\trecord\treason\n")
        for i in range(units):
            with open(staging / ".units" / f"q-{i:05d}.fa", "rb") as part:
                ends = np.fromfile(staging / ".units" / f"q-{i:05d}.ends", dtype=np.int64)
                q_kept += _copy_capped(part, qfa, ends, int(opts.quarantine_max_bytes) - qfa.tell())
            with open(staging / ".units" / f"q-{i:05d}.tsv") as part:
                shutil.copyfileobj(part, qtsv)
        qfa.flush()
        os.fsync(qfa.fileno())
    return q_kept


@dataclass
class _Sums:
    """The unit records added up (what the report and the manifest count)."""

    totals: dict[str, int]
    skipped: dict[str, int]
    class_counts: np.ndarray
    tax_conflicts: np.ndarray
    taxa: dict[str, set[int]]

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def _sum_records(records: list[dict[str, Any]], lm: LabelMap) -> _Sums:
    """Add up the unit records' counts (one record per shard, so no per-read loop)."""
    sums = _Sums(
        totals=dict.fromkeys(("records_in", "written", "other_split", "truncated", "iupac_reads", "iupac_bases",
                              "readlen_mismatch", "tokens", "bytes_in"), 0),
        skipped=dict.fromkeys(SKIP_REASONS, 0),
        class_counts=np.zeros(lm.num_classes, dtype=np.int64),
        tax_conflicts=np.zeros(lm.num_classes, dtype=np.int64),
        taxa={},
    )
    for r in records:
        for k in sums.totals:
            sums.totals[k] += r[k]
        for k, v in r["skipped"].items():
            sums.skipped[k] += v
        sums.class_counts += np.asarray(r["class_counts"], dtype=np.int64)
        sums.tax_conflicts += np.asarray(r["tax_conflicts"], dtype=np.int64)
        for c, t in r["taxa"].items():
            sums.taxa.setdefault(c, set()).update(t)
    return sums


def _build_report(
    opts: ConvertOptions, records: list[dict[str, Any]], s: Settings, lm: LabelMap, sums: _Sums, q_kept: int,
    q_bytes: int, t0: float, sampled: int,
) -> dict[str, Any]:
    """``report.json``: counts, skips by reason, quarantine, tax id conflicts, speed and memory."""
    totals, tax_conflicts, taxa, n_skipped = sums.totals, sums.tax_conflicts, sums.taxa, sums.n_skipped
    elapsed = time.time() - t0
    worker_rss = max([r.get("worker_peak_rss_mb", 0.0) for r in records] or [0.0])
    return {
        "records_in": totals["records_in"],
        "written": totals["written"],
        "skipped": n_skipped,
        "other_split": totals["other_split"],
        "skipped_by_reason": sums.skipped,
        "truncated": totals["truncated"],
        "quarantine": {"records_kept": q_kept, "records_not_kept": n_skipped - q_kept, "bytes": q_bytes,
                       "max_bytes": int(opts.quarantine_max_bytes)},
        "iupac_replaced_reads": totals["iupac_reads"],
        "iupac_replaced_bases": totals["iupac_bases"],
        "readlen_mismatch": totals["readlen_mismatch"],
        "tax_id_conflicts": {
            "reads": int(tax_conflicts.sum()),
            "per_class": {
                lm.display_names[i]: {"reads": int(tax_conflicts[i]), "mapping_tax_id": lm.tax_ids[i],
                              "header_tax_ids": sorted(t for t in taxa.get(str(lm.class_ids[i]), ()) if t != lm.tax_ids[i])}
                for i in np.flatnonzero(tax_conflicts).tolist()
            },
        },
        "classes_with_several_tax_ids": {c: sorted(t) for c, t in sorted(taxa.items(), key=lambda kv: int(kv[0])) if len(t) > 1},
        "per_class": {lm.display_names[i]: int(sums.class_counts[i]) for i in range(lm.num_classes)},
        "max_length": s.max_length,
        "max_length_sampled_reads": sampled,
        "tokens": totals["tokens"],
        "shards": len(records),
        "seconds": round(elapsed, 3),
        "reads_per_s": round(totals["records_in"] / max(elapsed, 1e-9), 1),
        "mb_per_s": round(sum(os.path.getsize(p) for p in opts.inputs) / 1e6 / max(elapsed, 1e-9), 3),
        "jobs": opts.jobs,
        "parallel": s.parallel,
        "peak_rss_mb": {"parent": round(_peak_rss_mb(), 1), "worker_max": round(worker_rss, 1)},
    }


def _build_manifest(
    opts: ConvertOptions, records: list[dict[str, Any]], s: Settings, lm: LabelMap, sums: _Sums
) -> dict[str, Any]:
    """``manifest.json``: the shards, the label table, the settings and the source that made them."""
    per_input = [0] * len(opts.inputs)
    for r in records:
        per_input[int(r["shard"]["input"])] += int(r["records_in"])
    return fmt.build_manifest(
        tokenizer=s.tokenizer_info,
        max_length=s.max_length,
        layout=s.layout,
        compression=s.compression,
        num_classes=lm.num_classes,
        label_names=lm.names,
        label_class_ids=lm.class_ids,
        label_tax_ids=lm.tax_ids,
        shards=[r["shard"] for r in records],
        dataset_id=s.dataset_id,
        num_tokens=sums.totals["tokens"],
        source={
            "inputs": [os.path.basename(p) for p in opts.inputs],
            # What --resume on the finished dataset compares the given inputs with (convert.repair).
            "input_bytes": [os.path.getsize(p) for p in opts.inputs],
            "input_head_sha256": [head_sha256(p) for p in opts.inputs],
            "header_regex": opts.header_regex,
            "mapping_sha256": lm.sha256,
            "reads_per_shard": opts.reads_per_shard,
            "records_in": sums.totals["records_in"],
            "records_per_input": per_input,
            "skipped": sums.n_skipped,
            "other_split": sums.totals["other_split"],
            "split": opts.split,
        },
    )


def _copy_capped(src: Any, dst: Any, ends: np.ndarray, room: int) -> int:
    """Copy the whole records of a quarantine part that fit in ``room`` bytes; return how many.

    ``ends`` are the byte offsets where the part's records end (written by the worker).
    """
    k = int(np.searchsorted(ends, max(room, 0), side="right"))
    if k:
        shutil.copyfileobj(_Limited(src, int(ends[k - 1])), dst)
    return k


class _Limited:
    """A file object that reads at most ``limit`` bytes of ``f``."""

    def __init__(self, f: Any, limit: int) -> None:
        self.f, self.left = f, limit

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


def _quarantine_note(report: dict[str, Any]) -> str:
    q = report.get("quarantine", {})
    if not q.get("records_not_kept"):
        return ""
    return (f" quarantine.fa capped at {q['max_bytes']:,} bytes ({q['records_not_kept']:,} skipped records only "
            "listed in quarantine.tsv);")


def report_warnings(report: dict[str, Any]) -> list[str]:
    """Things in a finished report the user should look at (printed to stderr by the CLI)."""
    out = []
    tc = report.get("tax_id_conflicts", {})
    if tc.get("reads"):
        shown = "; ".join(
            f"{name}: header {', '.join(map(str, v['header_tax_ids'][:3]))} vs mapping {v['mapping_tax_id']} "
            f"({v['reads']:,} reads)" for name, v in list(tc["per_class"].items())[:3]
        )
        out.append(
            f"warning: {tc['reads']:,} reads have a header tax id that contradicts the mapping ({shown}); "
            "the header's tax id is stored (tax_ids); see tax_id_conflicts in report.json"
        )
    return out


def summary_line(report: dict[str, Any], out: str) -> str:
    """One line for the end of a run."""
    reasons = ", ".join(f"{k} {v}" for k, v in report["skipped_by_reason"].items() if v) or "none"
    return (
        f"readshard: {report['records_in']:,} reads in = {report['written']:,} written + "
        f"{report['skipped']:,} skipped ({reasons})"
        + (f" + {report['other_split']:,} on other split sides" if report.get("other_split") else "")
        + f"; {report['truncated']:,} truncated at L={report['max_length']}; "
        f"{report['shards']} shards in {out};{_quarantine_note(report)} {report['seconds']:.1f} s, {report['reads_per_s']:,.0f} reads/s, "
        f"{report['mb_per_s']:.1f} MB/s; " + _rss_note(report)
    )


def _rss_note(report: dict[str, Any]) -> str:
    rss = report["peak_rss_mb"]
    if report.get("parallel") in ("processes", "cluster"):
        return f"peak RSS parent {rss['parent']:.0f} MB, worker {rss['worker_max']:.0f} MB"
    # Units ran in this process: one figure.
    jobs = report.get("jobs", 1)
    how = f" ({jobs} threads)" if report.get("parallel") == "threads" else ""
    return f"peak RSS {rss['parent']:.0f} MB{how}"
