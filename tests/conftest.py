"""Shared fixtures and helpers: paths, the tests' one read generator (``sample_reads``; its users
``write_reads`` and ``make_reads``), the CLIs run in-process (``convert_cli``, ``train_cli``) or as a
real process (``run_convert``, ``run_train``), session data (``split``, ``tiny_run``, ...) and the
test process's GC policy."""

from __future__ import annotations

import contextlib
import functools
import gc
import gzip
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(os.environ.get("READSHARD_SHARED", REPO.parent / "shared"))

# A shell starts a background job (`make test &`, `nohup ... &`, some CI runners) with SIGINT
# ignored, and an ignored signal stays ignored in every child: the Ctrl-C tests' converters would
# never see their SIGINT (a 60 s hang, or a skip "finished before the signal landed"). A handled
# signal is reset to the default in a child, so the test process handles it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# The cyclic GC of the test process. Every full collection scans all live objects: ~0.2 s with the
# imports of collection, ~0.5 s once transformers is in, and collection and the training and
# collate tests trigger dozens. So it is off while the test modules are imported (imports make
# little cyclic garbage), and what lives to the end of the session (modules, test items, session
# fixtures) is moved out of its sight (gc.freeze): after collection, and again at a module boundary
# once a large import (transformers, matplotlib) came in. The converter's own gc.freeze
# (convert.cli) tunes a process of its own; run in-process it would freeze a test's objects for
# good, so here it does nothing.
_gc_freeze = gc.freeze
gc.freeze = lambda: None
gc.disable()
_modules_frozen = 0


def _freeze_heap() -> None:
    """Collect, then move every live object to the permanent generation."""
    global _modules_frozen
    gc.collect()
    _gc_freeze()
    _modules_frozen = len(sys.modules)


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.enable()
    _freeze_heap()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    # After the module's fixtures are torn down, what is alive outlives the session's other modules.
    module_ends = nextitem is None or getattr(nextitem, "module", None) is not getattr(item, "module", None)
    if module_ends and len(sys.modules) - _modules_frozen >= 200:
        _freeze_heap()


# tests/data inputs no reader accepts, with a word their one-paragraph error must contain.
UNREADABLE_INPUTS = [
    ("empty.fa", "empty"),
    ("whitespace_only.fa", "empty"),
    ("not_fasta.txt", "not FASTA or FASTQ"),
    ("binary.bin", "binary"),
]


def genome_files() -> list[Path]:
    """Genomes shipped in the repo (gzip), else the shared ones."""
    shipped = sorted((REPO / "sample" / "genomes").glob("*.fasta.gz"))
    return shipped or sorted((SHARED / "data" / "genomes").glob("*.fasta"))


def _read_genome(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return "".join(line.strip() for line in f if not line.startswith(">")).upper()


@functools.lru_cache(maxsize=None)
def genome_texts(num: int) -> tuple[str, ...]:
    """The first ``num`` :func:`genome_files` as one upper-case sequence each (fewer where fewer exist)."""
    return tuple(_read_genome(p) for p in genome_files()[:num])


_ACGT = np.frombuffer(b"ACGT", dtype=np.uint8)
_CODE = np.full(256, 4, dtype=np.int64)  # A C G T -> 0..3; any other letter is never substituted
_CODE[np.frombuffer(b"ACGT", dtype=np.uint8)] = np.arange(4)


def random_genomes(num: int, length: int, seed: int) -> list[str]:
    """``num`` random ACGT genomes of ``length`` bases (the same ones for a given ``seed``)."""
    codes = np.random.default_rng(seed).integers(0, 4, size=(num, length))
    return [row.tobytes().decode() for row in _ACGT[codes]]


def sample_reads(labels: Sequence[int] | np.ndarray, genomes: Sequence[str], rng: np.random.Generator, *,
                 lengths: tuple[int, int], error_rate: float = 0.0) -> list[str]:
    """The tests' one read generator: read ``k`` is a window of ``genomes[labels[k]]``, its length
    uniform in ``lengths`` (both ends included), each A/C/G/T substituted by another base with
    probability ``error_rate``.

    ``rng`` draws the lengths (none when fixed), then the starts, then the substitutions; a
    Generator's draws do not depend on how many are asked at once, so reads sampled one at a
    time are those of one call.
    """
    labels = np.asarray(labels, dtype=np.int64)
    lo, hi = lengths
    lens = np.full(labels.size, lo, dtype=np.int64) if lo == hi else rng.integers(lo, hi + 1, size=labels.size)
    room = np.array([len(g) for g in genomes], dtype=np.int64)[labels] - lens
    starts = rng.integers(0, room) if labels.size else np.zeros(0, dtype=np.int64)
    reads = [genomes[c][a : a + k] for c, a, k in zip(labels.tolist(), starts.tolist(), lens.tolist())]
    if not error_rate:
        return reads
    raw = np.frombuffer("".join(reads).encode(), dtype=np.uint8)
    codes = _CODE[raw]
    hit = (rng.random(raw.size) < error_rate) & (codes < 4)
    text = np.where(hit, _ACGT[(codes + rng.integers(1, 4, size=raw.size)) % 4], raw)
    ends = np.cumsum(lens)
    return [text[e - k : e].tobytes().decode() for e, k in zip(ends.tolist(), lens.tolist())]


def make_reads(num_classes: int, reads_per_class: int, *, seed: int, genome_len: int = 3000,
               read_len: int = 150, error_rate: float = 0.01, genome_seed: int = 1234) -> tuple[list[str], np.ndarray]:
    """Reads and labels, shuffled: ``reads_per_class`` reads of each of ``num_classes`` random genomes
    (the same genomes for every ``seed``) with a few substitutions, so classes are learnable but not
    trivially (the training tests' data)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), reads_per_class)
    rng.shuffle(labels)
    genomes = random_genomes(num_classes, genome_len, genome_seed)
    return sample_reads(labels, genomes, rng, lengths=(read_len, read_len), error_rate=error_rate), labels


_COMP = str.maketrans("ACGTN", "TGCAN")


def write_reads(
    path: Path,
    *,
    n_per_class: int = 200,
    classes: int = 4,
    seed: int = 0,
    fastq: bool = False,
    gz: bool = False,
    line_width: int = 0,
) -> tuple[Path, Path]:
    """Write labeled paired reads sampled from real genomes in the seed header format: each
    fragment (200-399 bases, :func:`sample_reads`) on a random strand gives two mates of 100-150.

    Returns:
        (reads path, mapping TSV path). Class ids are non-contiguous (10, 20, ...).
    """
    rng = np.random.default_rng(seed)
    genomes = genome_texts(classes)
    lines: list[str] = []
    for c, genome in enumerate(genomes):
        cid = 10 * (c + 1)
        tax = "" if c % 2 else str(1000 + c)
        for i in range(n_per_class // 2):
            (f,) = sample_reads([0], [genome], rng, lengths=(200, 399))
            if rng.random() < 0.5:
                f = f.translate(_COMP)[::-1]
            for mate, seq in ((1, f[: int(rng.integers(100, 151))]), (2, f[::-1].translate(_COMP)[: int(rng.integers(100, 151))])):
                header = f"lbl|{cid}|{tax}|{len(seq)}|g{c}_{i}/{mate}"
                if fastq:
                    lines.append(f"@{header}\n{seq}\n+\n{'I' * len(seq)}\n")
                elif line_width:
                    body = "\n".join(seq[k : k + line_width] for k in range(0, len(seq), line_width))
                    lines.append(f">{header}\n{body}\n")
                else:
                    lines.append(f">{header}\n{seq}\n")
    # Interleave classes so every shard holds several (a fixed, seeded order).
    order = rng.permutation(len(lines) // 2)
    text = "".join(lines[2 * k] + lines[2 * k + 1] for k in order).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.write_bytes(gzip.compress(text, mtime=0))
    else:
        path.write_bytes(text)
    mapping = path.parent / "mapping.tsv"
    rows = ["class_id\ttax_id\tspecies"] + [
        f"{10 * (c + 1)}\t{'' if c % 2 else 1000 + c}\t{genome_files()[c].name.split('__')[0]}" for c in range(len(genomes))
    ]
    mapping.write_text("\n".join(rows) + "\n")
    return path, mapping


def wait_for_shards(staging: Path, n: int, proc: subprocess.Popen | None = None, timeout: float = 120) -> int:
    """Wait until ``staging`` holds ``n`` published shards, ``proc`` exits or ``timeout`` s pass; return the count.

    For tests that interrupt a running conversion once it has made some progress.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        if len(list(Path(staging).glob("shard-*.h5"))) >= n:
            break
        time.sleep(0.01)
    return len(list(Path(staging).glob("shard-*.h5")))


def kill_group(proc: subprocess.Popen) -> bool:
    """SIGKILL ``proc``'s process group and reap it; False when the group had already exited
    (``wait_for_shards`` polls, so a run that finished first is reaped and its group gone)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
        killed = True
    except ProcessLookupError:
        killed = False
    proc.wait()
    return killed


def start_convert(inp: Path, mapping: Path, out: Path, *extra: str, reads_per_shard: int | str = 500,
                  text: bool = False) -> subprocess.Popen:
    """Start ``python -m convert`` (500 reads per shard) in its own session, for tests that kill it
    or run two at once."""
    return subprocess.Popen(
        [sys.executable, "-m", "convert", str(inp), "--mapping", str(mapping), "--out", str(out),
         "--reads-per-shard", str(reads_per_shard), "--no-progress", *extra],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=text,
    )


def shard_hashes(out: Path) -> list[tuple[str, str]]:
    """(file, sha256) of each shard a published dataset's manifest lists."""
    import json

    return [(e["file"], e["sha256"]) for e in json.loads((out / "manifest.json").read_text())["shards"]]


def run_convert(*args: str | os.PathLike[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m convert ARGS`` in a subprocess, capturing output."""
    return subprocess.run(
        [sys.executable, "-m", "convert", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def run_train(*args: str | os.PathLike[str], cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m train ARGS`` in a subprocess (from ``cwd``), capturing output."""
    return subprocess.run(
        [sys.executable, "-m", "train", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def converted_reads(root: Path, *, n_per_class: int, classes: int, reads_per_shard: int,
                    out: str = "ref") -> tuple[Path, Path, Path]:
    """:func:`write_reads` under ``root/in`` converted by the CLI (in-process) into ``root/out``:
    (reads, mapping, dataset). For module fixtures: the reference a test's own run must match."""
    inp, mapping = write_reads(root / "in" / "r.fa", n_per_class=n_per_class, classes=classes)
    res = convert_cli(inp, "--mapping", mapping, "--out", root / out, "--reads-per-shard", reads_per_shard,
                      "--no-progress")
    assert res.returncode == 0, res.stderr
    return inp, mapping, root / out


def run_child(argv: Sequence[str | os.PathLike[str]], timeout: float, hang: str) -> tuple[int, str, str]:
    """Run ``argv`` from the repository in its own session: (exit code, stdout, stderr). After ``timeout``
    s its whole process group is killed and the test fails with ``hang`` (a hang must not stall CI)."""
    proc = subprocess.Popen(
        [str(a) for a in argv], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{hang} ({timeout} s)")
    return proc.returncode, out, err


@dataclass
class Ran:
    """What an in-process CLI call left: the exit code and captured streams (as ``CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


def in_process(main: Callable[[Sequence[str]], int], args: Sequence[str | os.PathLike[str]], cwd: Path | None) -> Ran:
    """``main(args)`` with stdout/stderr captured; argparse's ``SystemExit`` becomes the exit code."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.chdir(old)
    return Ran(int(code), out.getvalue(), err.getvalue())


def convert_cli(*args: str | os.PathLike[str], cwd: Path | None = None) -> Ran:
    """``python -m convert ARGS`` in this process (``convert.cli.main``, no ``exit_now``): ~20x cheaper
    than a subprocess; tests where the process itself is the point use :func:`run_convert`."""
    from convert.cli import main

    return in_process(main, args, cwd)


def train_cli(*args: str | os.PathLike[str], cwd: Path | None = None) -> Ran:
    """``python -m train ARGS`` in this process (``train.cli.main``)."""
    from train.cli import main

    return in_process(main, args, cwd)


def make(target: str, root: Path, *variables: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``make -C REPO TARGET`` as a checkout's user runs it, with this interpreter as ``$(PY)``, a
    venv stamp under ``root`` (so make runs no install) and ``SAMPLE=root/data/sample``."""
    # `make` needs the venv's install stamp; point VENV at a stamp newer than pyproject.toml so
    # make runs only the recipes asked for.
    venv = root / "venv-stamp"
    venv.mkdir(exist_ok=True)
    (venv / ".installed").touch()
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        ["make", "-C", str(REPO), target, f"PY={sys.executable}", f"VENV={venv}", f"SAMPLE={root / 'data' / 'sample'}",
         *variables], env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def after_make_convert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``data/sample/{reads,train,val}`` made by ``make convert`` itself (the
    README's quick start), once per session; its output is kept in ``make-convert.log``."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = tmp_path_factory.mktemp("after-make-convert")
    proc = make("convert", root)
    (root / "make-convert.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (root / "data" / "sample" / "train" / "manifest.json").is_file()
    return root


@pytest.fixture(scope="session")
def big_converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(reads, mapping, reference dataset): 10,000 reads in 20 shards of 500, for the tests that
    interrupt a conversion and compare what --resume finishes with this uninterrupted one."""
    return converted_reads(tmp_path_factory.mktemp("big"), n_per_class=2500, classes=4, reads_per_shard=500)


# The import steps of one fresh interpreter, each on top of the ones before (sys.modules only grows,
# so a module absent after a step was loaded by none of the steps so far).
IMPORT_STEPS = {
    "shards": "shards",
    "loaders": "loaders",
    "converter": "convert.pipeline, convert.cli, loaders.dataset",
}


@pytest.fixture(scope="session")
def fresh_modules() -> dict[str, frozenset[str]]:
    """``sys.modules`` of one fresh interpreter (started in the checkout) after each step of
    :data:`IMPORT_STEPS`: what a user's ``import loaders`` etc. pulls in, for the import-weight tests
    (one process for all of them: each costs ~1.5 s, torch included)."""
    import json

    code = "import json, sys\nseen = {}\n" + "".join(
        f"import {mods}\nseen[{step!r}] = sorted(sys.modules)\n" for step, mods in IMPORT_STEPS.items()
    ) + "print(json.dumps(seen))\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         timeout=300)
    return {step: frozenset(mods) for step, mods in json.loads(out.stdout.strip().splitlines()[-1]).items()}


@pytest.fixture
def reads(tmp_path: Path) -> tuple[Path, Path]:
    """A small labeled FASTA (4 real genomes, 200 reads each) and its mapping."""
    return write_reads(tmp_path / "in" / "reads.fa")


@pytest.fixture(scope="session")
def metagene_tokenizer_path() -> Path:
    """The shipped real METAGENE-1 tokenizer.json."""
    return REPO / "convert" / "assets" / "tokenizers" / "metagene-1" / "tokenizer.json"


# A converted train/val pair per distinct size, built once per session and shared (tests read it,
# never write into it). A test module picks its size with ``SPLIT = dict(num_classes=..., ...)``.
TINY_SPLIT = {"num_classes": 3, "train_per_class": 40, "val_per_class": 10}


@pytest.fixture(scope="session")
def make_split(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[Path, Path]]:
    """``make_split(**build_split_kwargs)``: (train, val) datasets, converted once per distinct kwargs."""
    from _train_helpers import build_split

    built: dict[tuple, tuple[Path, Path]] = {}

    def get(**kw: object) -> tuple[Path, Path]:
        key = tuple(sorted(kw.items()))
        if key not in built:
            built[key] = build_split(tmp_path_factory.mktemp("split"), **kw)
        return built[key]

    return get


@pytest.fixture(scope="module")
def split(request: pytest.FixtureRequest, make_split: Callable[..., tuple[Path, Path]]) -> tuple[Path, Path]:
    """The module's ``SPLIT`` size (default ``TINY_SPLIT``) of :func:`make_split`."""
    return make_split(**getattr(request.module, "SPLIT", TINY_SPLIT))


# The tiny trained run that the predict and evaluate tests read (never write into): 4 classes of
# 80 train / 25 val reads (conftest.make_reads: class c is species_c, class id 100 + c, tax id
# 5000 + c), DNABERT 6-mer tokens (L 152), a 1-layer Llama trained 30 steps.
TINY_RUN_SPLIT = {"num_classes": 4, "train_per_class": 80, "val_per_class": 25, "max_length": 152,
                  "tokenizer": "dnabert-6mer"}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, make_split: Callable[..., tuple[Path, Path]]) -> dict:
    """The :data:`TINY_RUN_SPLIT` run, once per session: ``train``, ``val`` (datasets), ``val_fa`` (the
    val reads' FASTA), ``run`` (the run directory) and ``result`` (what ``train.loop.run`` returned)."""
    from _train_helpers import tiny_run_config
    from train.loop import run

    train, val = make_split(**TINY_RUN_SPLIT)
    out = tmp_path_factory.mktemp("tiny-run") / "run"
    result = run(tiny_run_config(train, val, out))
    return {"train": train, "val": val, "val_fa": train.parent / "reads" / "val.fa", "run": out, "result": result}


@pytest.fixture(scope="session")
def four_shards(tmp_path_factory: pytest.TempPathFactory):
    """A loader test dataset (``_loader_helpers.build_dataset``): shards of 300, 0, 411 and 89 rows."""
    from _loader_helpers import build_dataset

    return build_dataset(tmp_path_factory.mktemp("four-shards") / "ds", shard_sizes=(300, 0, 411, 89), seed=13)


@pytest.fixture(scope="module")
def four_ds(four_shards):
    """A ``ShardDataset`` of :func:`four_shards`, opened once per module."""
    from loaders import ShardDataset

    return ShardDataset(four_shards.path)
