"""Measuring tools of the loader bench: page-cache control, process-tree RSS and CPU, time boxes.

This VM evicts file pages idle for ~30 s (DAMON reclaim), so every measurement reads its
files right before it starts; cold runs evict them first with ``posix_fadvise(DONTNEED)``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

__all__ = [
    "BATCH_SIZE",
    "Measurement",
    "MultiEpochBatches",
    "RssWatch",
    "batches_from_sampler",
    "cycle",
    "evict_files",
    "from_watch",
    "log",
    "measure",
    "read_bytes",
    "timebox",
    "warm_files",
]

# Every batched competitor gathers batches of this many reads.
BATCH_SIZE = 256


def log(msg: str) -> None:
    """One progress line on stderr (stdout carries the report)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- measuring tools


def warm_files(paths: Iterable[str | os.PathLike[str]]) -> float:
    """Read files whole (16 MiB blocks) so they sit in page cache; returns the seconds taken.

    Needed right before every measurement here: the VM pages out file pages idle ~30 s.
    """
    t0 = time.perf_counter()
    buf = bytearray(1 << 24)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.perf_counter() - t0


def evict_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Drop the files' clean pages from page cache (``posix_fadvise(DONTNEED)``), for cold runs.

    Only pages no process maps are dropped: close the mappings first.
    """
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _proc_rss(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) in bytes of one process from /proc (0, 0 if gone)."""
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, anon


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process in seconds (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def read_bytes() -> int:
    """Bytes this process caused to be fetched from storage (/proc/self/io; page faults included)."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/PID/task/TID/children (cheap: no /proc scan)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


class RssWatch:
    """Peak RSS (and anonymous RSS) of this process and its children while the block runs,
    and the CPU seconds they used.

    Sampled every ``interval`` s by a thread; RSS counts the file pages a memory map has
    touched (page cache), so ``peak_anon_mb`` is the memory the loader itself allocates;
    ``start`` is the tree's RSS when the block began. CPU time makes a contention-robust
    figure (samples per CPU-second) on a shared machine.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_anon = 0
        self.start = 0
        self._cpu0: dict[int, float] = {}
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        rss = anon = 0
        for pid in _tree_pids(os.getpid()):
            r, a = _proc_rss(pid)
            rss += r
            anon += a
            c = _proc_cpu(pid)
            self._cpu0.setdefault(pid, 0.0 if self._thread is not None else c)
            self._cpu[pid] = max(self._cpu.get(pid, 0.0), c)
        self.peak = max(self.peak, rss)
        self.peak_anon = max(self.peak_anon, anon)

    def sample_now(self) -> None:
        """Take a sample immediately (e.g. before worker processes exit)."""
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "RssWatch":
        self._sample()
        self.start = self.peak
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        """Peak VmRSS of the process tree, MiB."""
        return self.peak / 2**20

    @property
    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process tree used inside the block."""
        return sum(max(0.0, c - self._cpu0.get(p, 0.0)) for p, c in self._cpu.items())

    @property
    def delta_mb(self) -> float:
        """Peak RSS minus RSS at the start of the block, MiB."""
        return (self.peak - self.start) / 2**20

    @property
    def peak_anon_mb(self) -> float:
        """Peak RssAnon of the process tree, MiB."""
        return self.peak_anon / 2**20


@dataclass
class Measurement:
    """One timed run: samples served, seconds, and peak memory."""

    samples: int
    seconds: float
    peak_rss_mb: float = 0.0
    peak_anon_mb: float = 0.0
    warm_s: float = 0.0
    delta_mb: float = 0.0
    cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Samples per second."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_cpu_s(self) -> float:
        """Samples per CPU-second of the process tree (robust to other load on the machine)."""
        return self.samples / self.cpu_s if self.cpu_s > 0 else 0.0


def timebox(step: Callable[[], int], seconds: float, warmup_steps: int = 3, max_steps: int | None = None) -> tuple[int, float]:
    """Call ``step`` (returns samples served) for ``seconds`` after ``warmup_steps`` untimed calls.

    Returns:
        ``(samples, elapsed_seconds)`` of the timed part.
    """
    for _ in range(warmup_steps):
        step()
    n = steps = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        n += step()
        steps += 1
        now = time.perf_counter()
        if now >= deadline or (max_steps is not None and steps >= max_steps):
            return n, now - t0


def measure(
    step: Callable[[], int],
    seconds: float,
    files: Sequence[str | os.PathLike[str]] = (),
    warmup_steps: int = 3,
    max_steps: int | None = None,
) -> Measurement:
    """Warm ``files``, then time-box ``step`` under an :class:`RssWatch`."""
    warm_s = warm_files(files)
    with RssWatch() as watch:
        n, elapsed = timebox(step, seconds, warmup_steps, max_steps)
    return from_watch(n, elapsed, watch, warm_s)


def from_watch(n: int, elapsed: float, watch: RssWatch, warm_s: float = 0.0, extra: dict[str, Any] | None = None) -> Measurement:
    """A :class:`Measurement` of ``n`` samples in ``elapsed`` s with the watch's memory and CPU figures."""
    return Measurement(n, elapsed, peak_rss_mb=watch.peak_mb, peak_anon_mb=watch.peak_anon_mb, warm_s=warm_s,
                       delta_mb=watch.delta_mb, cpu_s=watch.cpu_s, extra=extra or {})


def cycle(make: Callable[[int], Iterable[Any]]) -> Iterator[Any]:
    """``make(epoch)`` for epoch 0, 1, 2, ... chained (endless)."""
    epoch = 0
    while True:
        yield from make(epoch)
        epoch += 1


class MultiEpochBatches:
    """A batch sampler that chains ``epochs`` epochs of a ``ShuffleBatchSampler``.

    One DataLoader iteration then spans many epochs, so the workers start once.
    """

    def __init__(self, sampler: Any, epochs: int) -> None:
        self.sampler = sampler
        self.epochs = epochs

    def __len__(self) -> int:
        return self.epochs * len(self.sampler)

    def __iter__(self) -> Iterator[np.ndarray]:
        for e in range(self.epochs):
            self.sampler.set_epoch(e)
            yield from self.sampler


def batches_from_sampler(n: int, count: int, seed: int = 0, epoch: int = 0) -> list[np.ndarray]:
    """The first ``count`` batches of ``ShuffleBatchSampler(n, 256)`` (full uniform shuffle)."""
    from loaders import ShuffleBatchSampler

    sampler = ShuffleBatchSampler(n, BATCH_SIZE, seed=seed)
    sampler.set_epoch(epoch)
    out = []
    for b in sampler:
        out.append(np.array(b, dtype=np.int64))
        if len(out) >= count:
            break
    return out
