"""Command line: ``python -m convert INPUT... --out DIR``, ``verify DIR``, ``stats DIR``.

Parses arguments and the optional YAML config, then calls the library. Every expected
failure (bad input, bad settings, disk full, ...) prints one paragraph and exits 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .options import CONFIG_KEYS, OPTIONS
from .optiontable import add_arguments, coerce_values, fields_from_yaml, given_fields

__all__ = ["main", "run", "exit_now", "build_parser", "load_config", "CONFIG_KEYS"]


def build_parser() -> argparse.ArgumentParser:
    """The converter's argument parser (its flags come from :data:`convert.options.OPTIONS`)."""
    p = argparse.ArgumentParser(
        prog="python -m convert",
        description=(
            "Convert labeled FASTA/FASTQ (plain or gzip) into tokenized, self-describing HDF5 shards. "
            "Subcommands: `python -m convert verify DIR [--source INPUT...]` checks a dataset; "
            "`python -m convert stats DIR` summarises one; `python -m convert leakage A B` reports fragments and "
            "identical sequences present in both datasets."
        ),
    )
    add_arguments(p, OPTIONS)
    return p


def load_config(path: str) -> dict[str, Any]:
    """Flatten a YAML config into ConvertOptions fields (unknown keys and wrong types are an error).

    Raises:
        ValueError: naming the file and the key (a :class:`convert.safeyaml.ConfigFileError`
            for an unreadable, non-YAML or alias-bomb file).
    """
    from .safeyaml import load_yaml

    return fields_from_yaml(load_yaml(path), OPTIONS, path)


def _option_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The options given in --config and as flags (flags win), in their fields' types.

    Raises:
        ValueError: naming the config file and key, or the flag.
    """
    fields: dict[str, Any] = load_config(args.config) if args.config else {}
    flags = given_fields(args, OPTIONS)
    fields.update(flags)
    try:
        coerce_values(fields, OPTIONS)
    except ValueError as exc:
        from_file = getattr(exc, "field", None) not in flags
        raise ValueError(f"{args.config}: {exc}" if from_file else str(exc)) from None
    return fields


def _scheduler_error(args: argparse.Namespace) -> str | None:
    """Why ``--scheduler`` cannot run here (``--jobs`` given too, or dask.distributed missing)."""
    from importlib.util import find_spec

    if args.jobs is not None:
        return ("--jobs is the local path; with --scheduler the cluster's workers set the parallelism. "
                "Drop one of them.")
    if find_spec("distributed") is None:
        return "--scheduler needs dask.distributed: pip install 'readshard[cluster]'"
    return None


def _convert_main(argv: Sequence[str]) -> int:
    from .pipeline import ERRORS, ConvertOptions, convert, summary_line, report_warnings

    # The imports (numba, h5py, numpy) are alive for the whole run: out of the cyclic GC's
    # sight, its full collections while numba loads its compiled code cost ~20 ms, not ~70.
    gc.freeze()

    args = build_parser().parse_args(argv)
    try:
        fields = _option_fields(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    error = _scheduler_error(args) if fields.get("scheduler") else None
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    opts = ConvertOptions(inputs=list(args.inputs), out=args.out, resume=args.resume, overwrite=args.overwrite,
                          progress=not args.no_progress, given=frozenset(fields), command=list(argv), **fields)
    try:
        if args.split:
            from .split import convert_split, parse_split

            reports = convert_split(opts, parse_split(args.split), args.seed)
        else:
            reports = {"": convert(opts)}
    except ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted_message(opts, args.split), file=sys.stderr)
        return 130
    for side, report in reports.items():
        out = str(Path(args.out) / side) if side else args.out
        if "resume" in report:  # --resume on a complete dataset
            print(f"readshard: {out}: {report['resume']}")
        else:
            for line in report_warnings(report):
                print(line, file=sys.stderr)
            print(summary_line(report, out))
    return 0


def _interrupted_message(opts: Any, split: str | None) -> str:
    """What Ctrl-C leaves and the one command that continues (or, with nothing started, repeats) the run."""
    from .pipeline import advised_command, staging_dir
    from .provenance import SPLIT_SIDES

    outs = [Path(opts.out) / side for side in SPLIT_SIDES] if split else [Path(opts.out)]
    if any((staging_dir(o) / "plan.json").is_file() for o in outs):
        return ("interrupted: nothing was published; rerun with --resume to continue (the finished shards are "
                f"kept): {advised_command(opts, add=('--resume',), drop=('--overwrite',))}")
    return f"interrupted before anything was converted; nothing was published. Rerun {advised_command(opts)}"


def _verify_main(argv: Sequence[str]) -> int:
    from .verify import verify_dataset

    p = argparse.ArgumentParser(prog="python -m convert verify", description="Check a dataset: manifest, shard sha256, per-read checks; with --source, that stored reads decode to the source reads.")
    p.add_argument("dataset")
    p.add_argument("--source", nargs="+", metavar="INPUT", help="the original inputs, to check a sample of reads and every quarantined record against")
    p.add_argument("--sample", type=float, default=0.01, help="fraction of reads checked against --source (default 0.01)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    result = verify_dataset(args.dataset, sources=args.source, sample=args.sample, progress=not args.no_progress)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for line in result["messages"]:
            print(line)
        print(("OK: " if result["ok"] else "FAILED: ") + result["summary"])
    return 0 if result["ok"] else 1


def _stats_main(argv: Sequence[str]) -> int:
    from .verify import dataset_stats

    p = argparse.ArgumentParser(prog="python -m convert stats", description="Summarise a dataset.")
    p.add_argument("dataset")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        stats = dataset_stats(args.dataset)
    except Exception as exc:  # noqa: BLE001 - any failure here is reported as one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        for key, value in stats.items():
            if key != "per_class":
                print(f"{key}: {value}")
        print("per class:")
        for name, count in stats["per_class"].items():
            print(f"  {count:>10,}  {name}")
    return 0


def _leakage_main(argv: Sequence[str]) -> int:
    from .leakage import LeakageError, find_leakage, format_leakage

    p = argparse.ArgumentParser(
        prog="python -m convert leakage",
        description="Report fragments (mate pairs, by fragment hash) and identical stored sequences present in "
        "both datasets; exit 1 if there are any, 0 if none. Streaming, bounded memory.",
    )
    p.add_argument("a", metavar="A", help="a dataset (e.g. the training set)")
    p.add_argument("b", metavar="B", help="another dataset (e.g. the validation set)")
    p.add_argument("--memory-mb", type=int, default=512, help="memory for one pass's hashes (default 512); "
                   "more passes over the shards when A needs more")
    p.add_argument("--examples", type=int, default=5, help="shared keys to show with their rows and records (default 5)")
    p.add_argument("--fragments-only", action="store_true", help="check fragments only, not identical sequences "
                   "(reads of different fragments can be identical, e.g. on small or repetitive genomes)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        result = find_leakage(args.a, args.b, memory_mb=args.memory_mb, examples=max(0, args.examples),
                              progress=not args.no_progress, sequences=not args.fragments_only)
    except LeakageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for line in format_leakage(result):
            print(line)
    return 1 if result["leak"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m convert``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "verify":
        return _verify_main(argv[1:])
    if argv and argv[0] == "stats":
        return _stats_main(argv[1:])
    if argv and argv[0] == "leakage":
        return _leakage_main(argv[1:])
    return _convert_main(argv)


def run() -> NoReturn:
    """``python -m convert`` and ``readshard-convert``: :func:`main`, then :func:`exit_now`."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """End the process with ``code``, skipping the interpreter's teardown when that is safe.

    Tearing down the modules a conversion loads (numba's compiler objects, LLVM) takes
    ~0.07 s, more than the conversion of a small file's last unit, and does nothing useful:
    every file a subcommand wrote is closed by then (a conversion's also fsynced), and no
    clean-up of this package runs at exit. Logging and the standard
    streams are flushed first. With a child process alive (``--parallel processes`` keeps
    its pool until exit), or a stream that cannot be flushed (a closed pipe), the normal
    exit runs instead, so its clean-up and error reporting are unchanged.
    """
    import logging
    import multiprocessing

    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    if multiprocessing.active_children():
        sys.exit(code)
    os._exit(code)
