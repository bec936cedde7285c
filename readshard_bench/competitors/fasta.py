"""On-the-fly competitors: random access into the FASTA and tokenizing each read as it is served.

* ``pyfastx_on_the_fly``: the seed's approach, ``pyfastx.Fasta[i].seq`` (pyfastx is a core
  dependency).
* ``pyfaidx_on_the_fly``: ``pyfaidx.Fasta[name][:].seq`` (the ``bench`` extra; skipped when
  not installed).

Both encode with the METAGENE-1 ``Tokenizer`` per read, visit reads in ``ShuffleSampler``
order (epoch after epoch, so a fast machine never runs out of reads), and rebuild their index
first (timed apart).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from readshard_bench.measure import BATCH_SIZE, Measurement, cycle, measure, warm_files

__all__ = ["bench_pyfaidx", "bench_pyfastx", "shuffled_order", "tokenizer_json"]


def tokenizer_json() -> Path:
    """METAGENE-1's ``tokenizer.json`` as shipped in the installed ``convert`` package."""
    from convert.tokenizers import ASSETS

    return ASSETS / "metagene-1" / "tokenizer.json"


def shuffled_order(n: int, seed: int) -> Iterator[int]:
    """Endless ``ShuffleSampler(n)`` order: epoch 0, then 1, 2, ... (never exhausted)."""
    from loaders import ShuffleSampler

    sampler = ShuffleSampler(n, seed=seed)

    def epoch(e: int) -> Iterator[int]:
        sampler.set_epoch(e)
        return iter(sampler)

    return cycle(epoch)


def _fresh_link(fasta: Path, work: Path, index_suffixes: tuple[str, ...]) -> Path:
    """A symlink to ``fasta`` in ``work`` (the bench's own cache) with no stale index beside it.

    pyfastx 2.3 overflows a heap buffer (glibc abort at exit) when its index path is longer
    than the FASTA path, so each library indexes a short link in the work dir instead.
    """
    work.mkdir(parents=True, exist_ok=True)
    link = work / "train.fa"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(fasta).resolve())
    for suffix in index_suffixes:
        Path(str(link) + suffix).unlink(missing_ok=True)
    return link


def _tokenize_step(fetch: Callable[[int], str], order: Iterator[int], max_length: int) -> Callable[[], int]:
    """A step that fetches and encodes one batch of reads into an int16 matrix."""
    from tokenizers import Tokenizer

    encode = Tokenizer.from_file(str(tokenizer_json())).encode
    out = np.zeros((BATCH_SIZE, max_length), dtype=np.int16)

    def step() -> int:
        out[:] = 0
        for k in range(BATCH_SIZE):
            ids = encode(fetch(next(order))).ids[:max_length]
            out[k, : len(ids)] = ids
        return BATCH_SIZE

    return step


def _finish(m: Measurement, n: int, index_s: float) -> Measurement:
    m.extra["index_build_s"] = round(index_s, 3)
    m.extra["index_reads_per_s"] = round(n / index_s, 1) if index_s > 0 else None
    return m


def bench_pyfastx(fasta: Path, work: Path, max_length: int, seconds: float) -> Measurement:
    """``pyfastx_on_the_fly``: ``Fasta[i].seq`` + METAGENE-1 ``Tokenizer.encode`` per read."""
    import pyfastx

    link = _fresh_link(fasta, work, (".fxi", ".fxi-journal"))
    warm_files([fasta])
    t0 = time.perf_counter()
    fa = pyfastx.Fasta(str(link))
    index_s = time.perf_counter() - t0
    n = len(fa)
    step = _tokenize_step(lambda i: fa[i].seq, shuffled_order(n, seed=5), max_length)
    return _finish(measure(step, seconds, [fasta, str(link) + ".fxi"], warmup_steps=1), n, index_s)


def bench_pyfaidx(fasta: Path, work: Path, max_length: int, seconds: float) -> Measurement:
    """``pyfaidx_on_the_fly``: ``Fasta[name][:].seq`` + METAGENE-1 ``Tokenizer.encode`` per read."""
    import pyfaidx

    link = _fresh_link(fasta, work / "pyfaidx", (".fai",))
    warm_files([fasta])
    t0 = time.perf_counter()
    fa: Any = pyfaidx.Fasta(str(link), as_raw=True, sequence_always_upper=False, rebuild=True)
    index_s = time.perf_counter() - t0
    names = list(fa.keys())
    step = _tokenize_step(lambda i: fa[names[i]][:], shuffled_order(len(names), seed=5), max_length)
    try:
        return _finish(measure(step, seconds, [fasta, str(link) + ".fai"], warmup_steps=1), len(names), index_s)
    finally:
        fa.close()
