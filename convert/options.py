"""The converter's options, each written once: flag, field, YAML key, help, README text, checks.

:mod:`convert.cli` builds its parser and reads ``--config`` from :data:`OPTIONS`;
:func:`validate` is the one place option values are checked (:mod:`convert.pipeline` calls
it before looking at anything on disk); :func:`readme_table` is the README's option table
(``tests/test_options.py`` compares them). The defaults themselves live on
:class:`convert.pipeline.ConvertOptions` (the test checks every option there has a record).
"""

from __future__ import annotations

import argparse
from typing import Any

from .executors import PARALLEL_MODES
from shards import COMPRESSIONS, LAYOUTS, MAX_LENGTH_LIMIT
from .optiontable import Option, check_values, config_keys_help, markdown_table

__all__ = ["OPTIONS", "CONFIG_KEYS", "byte_size", "validate", "readme_table", "config_help", "MIN_RECORD_BYTES"]

MIN_RECORD_BYTES = 1024
_HEADER_FORMAT = "the `>lbl\\|class_id\\|tax_id\\|readlen\\|name/mate` header format"


def byte_size(text: Any) -> int:
    """``123``, ``500K``, ``20M``, ``1G`` -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 1000000, 500M or 2G)") from None


def _max_length(value: Any) -> int | str:
    if str(value) == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--max-length must be an integer or 'auto', got {value!r}") from None


def _check_max_length(v: Any) -> str | None:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_LENGTH_LIMIT):
        return None
    return (f"--max-length must be between 1 and {MAX_LENGTH_LIMIT} (token lengths are stored as int16) or 'auto', "
            f"got {v!r}")


def _check_record_bytes(v: Any) -> str | None:
    if isinstance(v, int) and v >= MIN_RECORD_BYTES:
        return None
    return f"--max-record-bytes must be an integer of at least {MIN_RECORD_BYTES}, got {v!r}"


_CONVERT_OPTIONS = (
    Option("inputs", None, positional=True, metavar="INPUT", help="FASTA/FASTQ files, plain or .gz, converted in order"),
    Option("out", "--out", required=True, help="output dataset directory (published only when complete)"),
    Option("mapping", "--mapping", "data.mapping", metavar="TSV", yaml_types=(str,), expected="a path to the mapping TSV",
           help="TSV with columns class_id, tax_id, species: class_id -> label 0..C-1 and its name",
           doc="`class_id` → contiguous label 0..C-1 (in class-id order) and its name"),
    Option("header_regex", "--header-regex", "data.header_regex", metavar="RE", expected="a regular expression string",
           help="regex with named groups class_id (required), tax_id, readlen, name, mate, matched against the record "
           "id (text before the first space); default: the >lbl|class_id|tax_id|readlen|name/mate header format",
           doc="named groups `class_id` (required), `tax_id`, `readlen`, `name`, `mate`, matched against the record "
           f"id; default: {_HEADER_FORMAT}"),
    Option("tokenizer", "--tokenizer", "tokenizer.name", metavar="SPEC", expected="a tokenizer name or path",
           help="metagene-1 (default), dnabert-6mer, dnabert-2, char, or a path to a tokenizer.json / local Hugging "
           "Face tokenizer directory",
           doc="`metagene-1` (default), `dnabert-6mer`, `dnabert-2`, `char`, or a `tokenizer.json` / local HF "
           "tokenizer directory (a file identical to a registry tokenizer's is that tokenizer: same name; checks "
           "compare sha256)"),
    Option("max_length", "--max-length", "tokenizer.max_length", metavar="N|auto", label="`--max-length N\\|auto`",
           yaml_types=(int, str), expected="an integer or 'auto'", coerce=_max_length, check=_check_max_length,
           help="tokens per read L, or 'auto' (default): smallest multiple of 8 covering 99.99%% of the first 20,000 "
           "reads; longer reads are truncated, kept and counted",
           doc="tokens per read, 1..32,767 (lengths are int16); `auto` = smallest multiple of 8 covering 99.99% of "
           "the first 20,000 reads, capped at 32,767. Longer reads are truncated (closing special token kept), kept "
           "and counted"),
    Option("layout", "--layout", "output.layout", choices=LAYOUTS,
           help="mmap (default): contiguous, memory-mappable; compressed: chunked + shuffle + gzip/lzf, read by whole "
           "chunks",
           doc="`mmap` (default): contiguous, memory-mapped by the loader; `compressed`: chunked + shuffle + gzip/lzf"),
    Option("compression", "--compression", "output.compression", choices=COMPRESSIONS, nullable=True,
           help="codec for --layout compressed (default gzip); an error without --layout compressed",
           doc="codec of `--layout compressed` (default gzip); an error with the mmap layout"),
    Option("reads_per_shard", "--reads-per-shard", "output.reads_per_shard", type=int, metavar="N", yaml_types=(int,),
           expected="an integer", check=lambda v: None if v >= 1 else "--reads-per-shard must be at least 1",
           help="records per unit of work = per shard (default 65536)",
           doc="records per unit of work = per shard (default 65,536: small units keep both workers busy to the end "
           "and memory low; 558 M reads make ~8,500 shards of ~6 MB)"),
    Option("jobs", "--jobs", "convert.jobs", type=int, metavar="N", yaml_types=(int,), expected="an integer",
           help="units converted at once (default: the usable CPU cores); output is identical for any value",
           doc="units converted at once (default: the usable cores, `len(os.sched_getaffinity(0))`); the output is "
           "byte-identical for any N"),
    Option("parallel", "--parallel", "convert.parallel", choices=PARALLEL_MODES,
           help="how --jobs runs: auto (default) uses threads when the default header format and the fast BPE "
           "encoder run without the GIL, else worker processes; processes isolates each unit in its own process",
           doc="how `--jobs` runs: `auto` (default) uses N threads of this process when a unit's hot path runs "
           "without the GIL (the default header format, parsed by numba; the fast BPE encoder on units of at least "
           "4,096 reads, or the k-mer and char tokenizers; `--layout mmap`), else N worker processes (a custom "
           "`--header-regex`, a tokenizer that needs Hugging Face, `--layout compressed`); `processes` isolates "
           "every unit in a worker process. Same bytes either way"),
    Option("scheduler", "--scheduler", "convert.scheduler", metavar="ADDRESS",
           expected="a dask scheduler address (tcp://host:8786)",
           help="run the units on a dask.distributed cluster, e.g. tcp://host:8786 (needs the cluster extra; inputs "
           "and --out on a filesystem all workers share); output is identical to --jobs 1",
           doc="run the units on a dask.distributed cluster (`tcp://host:8786`) instead of local processes; same "
           "bytes as `--jobs 1` (see [Beyond one machine](#beyond-one-machine---scheduler))"),
    Option("on_bad_record", "--on-bad-record", "convert.on_bad_record", choices=("skip", "error"),
           help="skip (default): quarantine and count bad records; error: stop at the first one, naming file and line",
           doc="`skip` (default) quarantines and counts; `error` stops at the first, naming file and line"),
    Option("max_record_bytes", "--max-record-bytes", "convert.max_record_bytes", type=int, metavar="N",
           yaml_types=(int,), expected="an integer (bytes)", check=_check_record_bytes,
           help="records longer than this many bytes (header + sequence; default 4 MiB) are quarantined as too_long "
           "without being held in memory",
           doc="records longer than N bytes (header + sequence, default 4 MiB) are quarantined as `too_long` while "
           "they stream in: they are never held whole, so memory stays bounded by bytes (quarantine.fa keeps only "
           "their header line)"),
    Option("min_written_fraction", "--min-written-fraction", "convert.min_written_fraction", type=float, metavar="F",
           yaml_types=(int, float), expected="a fraction between 0 and 1", coerce=float,
           check=lambda v: None if 0 <= float(v) <= 1 else f"--min-written-fraction must be between 0 and 1, got {v}",
           help="stop (exit 2) when fewer than this fraction of the records would be written: checked on the first "
           "10,000 records of each input before converting (seconds) and on all records before publishing "
           "(default 0.5; 0 allows any)",
           doc="stop with exit 2 when fewer than F of the records would be written (default 0.5; 0 allows anything): "
           "checked on the first 10,000 records of each input before any work (seconds; names the top skip reason "
           "and one header beside the regex or mapping) and on all records before publishing"),
    Option("quarantine_max_bytes", "--quarantine-max-bytes", "convert.quarantine_max_bytes", type=byte_size,
           metavar="N", yaml_types=(int, str), expected="bytes, e.g. 1000000 or 2G", coerce=byte_size,
           check=lambda v: None if int(v) >= 0 else f"--quarantine-max-bytes must be >= 0, got {v}",
           help="quarantine.fa keeps skipped records up to this size (e.g. 500M, 2G; default 1G); the rest are "
           "listed in quarantine.tsv and counted in the report",
           doc="`quarantine.fa` keeps whole skipped records up to N bytes (`500M`, `2G`; default 1G); the rest are "
           "listed in `quarantine.tsv` and counted in the report"),
    Option("split", "--split", metavar="val=F[,test=G]", label="`--split val=F[,test=G]`, `--seed S`",
           help="write DIR/train, DIR/val (and DIR/test) from the inputs, each row by its fragment hash: both mates "
           "always on the same side, the same for any --jobs",
           doc="write `DIR/train`, `DIR/val` (`DIR/test`) by fragment hash: mates together, identical for any "
           "`--jobs` (below)"),
    Option("seed", "--seed", type=int, default=0, help="seed of --split (default 0)"),
    Option("resume", "--resume", action="store_true", default=False,
           help="continue an interrupted conversion (an interrupted --overwrite too): keep verified shards, redo the "
           "rest; on a complete dataset, check it and re-convert damaged shards. Inputs and given options must match "
           "the dataset's (or the unfinished conversion's): a difference is an error naming it",
           doc="continue an interrupted conversion: verified shards are kept, the rest redone. On a complete dataset: "
           "check every shard (exit 0, `already complete`) and re-convert any missing, truncated or modified shard "
           "from its unit (byte-identical, checked against the manifest); settings come from the manifest, so "
           "`python -m convert INPUT --out DIR --resume` is enough. Inputs (name, size, first MiB) and every option "
           "given are compared with the manifest (or the unfinished conversion's plan) before anything else: a "
           "difference is exit 2 naming each one and the `--overwrite` command that converts anew. An interrupted "
           "`--overwrite` is continued by `--resume` too"),
    Option("overwrite", "--overwrite", action="store_true", default=False,
           help="replace an existing --out (kept until the new one is complete) or discard an unfinished conversion",
           doc="replace an existing `--out` (kept until the new one is complete)"),
    Option("no_progress", "--no-progress", action="store_true", default=False, help="no progress bar"),
)

# --config lists the keys of the records above: it is built from them.
_CONFIG = Option(
    "config", "--config", metavar="YAML",
    help=f"YAML config; keys {config_keys_help(_CONVERT_OPTIONS)}. Flags override it.",
    doc=f"keys {', '.join(f'`{o.key}`' for o in _CONVERT_OPTIONS if o.key)}; flags override. Aliases are bounded (a "
    "YAML alias bomb is refused) and every config error names the file and key",
)

#: Every converter option, in ``--help`` and README order.
OPTIONS: tuple[Option, ...] = (*_CONVERT_OPTIONS[:2], _CONFIG, *_CONVERT_OPTIONS[2:])

#: YAML config key (dotted) -> ConvertOptions field.
CONFIG_KEYS: dict[str, str] = {o.key: o.field for o in OPTIONS if o.key}


def config_help() -> str:
    """The ``--config`` help text (the keys a config file may hold)."""
    return _CONFIG.help


def readme_table() -> str:
    """The README's "Converter CLI" option table, generated from :data:`OPTIONS`."""
    return markdown_table(OPTIONS)


def validate(opts: Any) -> None:
    """Refuse option values that are wrong whatever is on disk; ``opts`` is a ConvertOptions.

    Raises:
        ValueError: naming the flag, the value and what is allowed.
    """
    check_values(vars(opts), OPTIONS)
    if opts.compression is not None and opts.layout != "compressed":
        raise ValueError(
            f"--compression {opts.compression} applies only to --layout compressed (the {opts.layout} layout is "
            f"uncompressed): add --layout compressed, or drop --compression"
        )
    if not opts.inputs:
        raise ValueError("no input files given")
