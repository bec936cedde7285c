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

__all__ = ["main", "run", "exit_now", "build_parser", "load_config"]

# YAML config keys (dotted) -> ConvertOptions field.
CONFIG_KEYS = {
    "data.header_regex": "header_regex",
    "data.mapping": "mapping",
    "tokenizer.name": "tokenizer",
    "tokenizer.max_length": "max_length",
    "output.layout": "layout",
    "output.compression": "compression",
    "output.reads_per_shard": "reads_per_shard",
    "convert.jobs": "jobs",
    "convert.parallel": "parallel",
    "convert.scheduler": "scheduler",
    "convert.on_bad_record": "on_bad_record",
    "convert.max_record_bytes": "max_record_bytes",
    "convert.min_written_fraction": "min_written_fraction",
    "convert.quarantine_max_bytes": "quarantine_max_bytes",
}


def build_parser() -> argparse.ArgumentParser:
    """The converter's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m convert",
        description=(
            "Convert labeled FASTA/FASTQ (plain or gzip) into tokenized, self-describing HDF5 shards. "
            "Subcommands: `python -m convert verify DIR [--source INPUT...]` checks a dataset; "
            "`python -m convert stats DIR` summarises one; `python -m convert leakage A B` reports fragments and "
            "identical sequences present in both datasets."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="FASTA/FASTQ files, plain or .gz, converted in order")
    p.add_argument("--out", required=True, help="output dataset directory (published only when complete)")
    p.add_argument("--config", help="YAML config; keys data.header_regex, data.mapping, tokenizer.name, "
                   "tokenizer.max_length, output.layout, output.compression, output.reads_per_shard, "
                   "convert.jobs, convert.parallel, convert.scheduler, convert.on_bad_record, convert.max_record_bytes, "
                   "convert.min_written_fraction, convert.quarantine_max_bytes. Flags override it.")
    p.add_argument("--mapping", help="TSV with columns class_id, tax_id, species: class_id -> label 0..C-1 and its name")
    p.add_argument("--header-regex", help="regex with named groups class_id (required), tax_id, readlen, name, mate, "
                   "matched against the record id (text before the first space); default: the lbl|... seed format")
    p.add_argument("--tokenizer", help="metagene-1 (default), dnabert-6mer, dnabert-2, char, or a path to a "
                   "tokenizer.json / local Hugging Face tokenizer directory")
    p.add_argument("--max-length", help="tokens per read L, or 'auto' (default): smallest multiple of 8 covering "
                   "99.99%% of the first 20,000 reads; longer reads are truncated, kept and counted")
    p.add_argument("--layout", choices=("mmap", "compressed"), help="mmap (default): contiguous, memory-mappable; "
                   "compressed: chunked + shuffle + gzip/lzf, read by whole chunks")
    p.add_argument("--compression", choices=("gzip", "lzf"), help="codec for --layout compressed (default gzip); an error without --layout compressed")
    p.add_argument("--reads-per-shard", type=int, help="records per unit of work = per shard (default 65536)")
    p.add_argument("--jobs", type=int, help="units converted at once (default: the usable CPU cores); output is identical for any value")
    p.add_argument("--parallel", choices=("auto", "threads", "processes"), help="how --jobs runs: auto (default) uses "
                   "threads when the default header format and the fast BPE encoder run without the GIL, else worker "
                   "processes; processes isolates each unit in its own process")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run the units on a dask.distributed cluster, e.g. "
                   "tcp://host:8786 (needs the cluster extra; inputs and --out on a filesystem all workers share); "
                   "output is identical to --jobs 1")
    p.add_argument("--on-bad-record", choices=("skip", "error"), help="skip (default): quarantine and count bad "
                   "records; error: stop at the first one, naming file and line")
    p.add_argument("--max-record-bytes", type=int, help="records longer than this many bytes (header + sequence; "
                   "default 4 MiB) are quarantined as too_long without being held in memory")
    p.add_argument("--min-written-fraction", type=float, help="stop (exit 2) when fewer than this fraction of the "
                   "records would be written: checked on the first 10,000 records of each input before converting "
                   "(seconds) and on all records before publishing (default 0.5; 0 allows any)")
    p.add_argument("--quarantine-max-bytes", type=_byte_size, help="quarantine.fa keeps skipped records up to this "
                   "size (e.g. 500M, 2G; default 1G); the rest are listed in quarantine.tsv and counted in the report")
    p.add_argument("--split", metavar="val=F[,test=G]", help="write DIR/train, DIR/val (and DIR/test) from the "
                   "inputs, each row by its fragment hash: both mates always on the same side, the same for any --jobs")
    p.add_argument("--seed", type=int, default=0, help="seed of --split (default 0)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted conversion (an interrupted --overwrite too): keep verified shards, redo the rest; "
                   "on a complete dataset, check it and re-convert damaged shards. Inputs and given options must match "
                   "the dataset's (or the unfinished conversion's): a difference is an error naming it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (kept until the new one is complete) or discard an unfinished conversion")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# Config key -> (accepted types, what the error says is expected).
_KEY_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "data.header_regex": ((str,), "a regular expression string"),
    "data.mapping": ((str,), "a path to the mapping TSV"),
    "tokenizer.name": ((str,), "a tokenizer name or path"),
    "tokenizer.max_length": ((int, str), "an integer or 'auto'"),
    "output.layout": ((str,), "mmap or compressed"),
    "output.compression": ((str,), "gzip or lzf"),
    "output.reads_per_shard": ((int,), "an integer"),
    "convert.jobs": ((int,), "an integer"),
    "convert.parallel": ((str,), "auto, threads or processes"),
    "convert.scheduler": ((str,), "a dask scheduler address (tcp://host:8786)"),
    "convert.on_bad_record": ((str,), "skip or error"),
    "convert.max_record_bytes": ((int,), "an integer (bytes)"),
    "convert.min_written_fraction": ((int, float), "a fraction between 0 and 1"),
    "convert.quarantine_max_bytes": ((int, str), "bytes, e.g. 1000000 or 2G"),
}


def _byte_size(text: str) -> int:
    """``123``, ``500K``, ``20M``, ``1G`` -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 1000000, 500M or 2G)") from None


def load_config(path: str) -> dict[str, Any]:
    """Flatten a YAML config into ConvertOptions fields (unknown keys and wrong types are an error).

    Raises:
        ValueError: naming the file and the key (a :class:`convert.safeyaml.ConfigFileError`
            for an unreadable, non-YAML or alias-bomb file).
    """
    from .safeyaml import load_yaml

    raw = load_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of sections (data:, tokenizer:, ...), got a {type(raw).__name__}")
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = node

    walk("", raw)
    unknown = sorted(k for k in flat if k not in CONFIG_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}; known: {sorted(CONFIG_KEYS)}")
    for key, value in flat.items():
        types, expected = _KEY_TYPES.get(key, ((object,), ""))
        if not isinstance(value, types) or isinstance(value, bool) or (isinstance(value, str) and int in types and value != "auto"):
            raise ValueError(f"{path}: {key}: expected {expected}, got {value!r}")
    return {CONFIG_KEYS[k]: v for k, v in flat.items()}


def _convert_main(argv: Sequence[str]) -> int:
    from .pipeline import ERRORS, ConvertOptions, convert, summary_line, report_warnings

    # The imports (numba, h5py, numpy) are alive for the whole run: out of the cyclic GC's
    # sight, its full collections while numba loads its compiled code cost ~20 ms, not ~70.
    gc.freeze()

    args = build_parser().parse_args(argv)
    fields: dict[str, Any] = {}
    try:
        if args.config:
            fields.update(load_config(args.config))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in ("mapping", "header_regex", "tokenizer", "max_length", "layout", "compression", "reads_per_shard", "jobs",
                 "parallel", "scheduler", "on_bad_record", "max_record_bytes", "min_written_fraction", "quarantine_max_bytes"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    try:
        if "quarantine_max_bytes" in fields:
            fields["quarantine_max_bytes"] = _byte_size(fields["quarantine_max_bytes"])
        if "min_written_fraction" in fields:
            fields["min_written_fraction"] = float(fields["min_written_fraction"])
    except (argparse.ArgumentTypeError, ValueError) as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2
    if "max_length" in fields and str(fields["max_length"]) != "auto":
        try:
            fields["max_length"] = int(fields["max_length"])
        except ValueError:
            print(f"error: --max-length must be an integer or 'auto', got {fields['max_length']!r}", file=sys.stderr)
            return 2
    if fields.get("scheduler"):
        from importlib.util import find_spec

        if args.jobs is not None:
            print("error: --jobs is the local path; with --scheduler the cluster's workers set the parallelism. "
                  "Drop one of them.", file=sys.stderr)
            return 2
        if find_spec("distributed") is None:
            print("error: --scheduler needs dask.distributed: pip install 'readshard[cluster]'", file=sys.stderr)
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
