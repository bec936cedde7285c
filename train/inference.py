"""The inference core shared by ``python -m train predict`` and ``python -m train evaluate``.

* :func:`load_run` rebuilds a trained run's model from ``RUN/config.json`` and
  ``RUN/checkpoint.pt`` (loaded with ``weights_only``), with the run's class table, tokenizer
  identity and the temperature of ``RUN/calibration.json`` (written by ``evaluate``).
* :func:`score_reads` streams FASTA/FASTQ files (plain or gzip, any headers) through the
  converter's own unit scan and the run's tokenizer, in blocks of bounded size; a thread
  parses and tokenizes the next block while the model scores this one.
* :func:`score_dataset` does the same for a converted readshard dataset.
* :func:`pair_log_probs` combines the mates of a fragment (summed log-probabilities,
  renormalised), as Kraken2's ``--paired`` combines both reads of a pair.

Each yields :class:`Scores` blocks: log-probabilities plus where every read came from.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

# The converter's compiled record scanning, so predict and convert read FASTA/FASTQ alike.
from convert.fastparse import ANY_SKIP_REASONS, parse_any
from shards import FormatError
from convert.tokenizers import ReadTokenizer, TokenizerError, load_tokenizer
from train.checkpoint import load_checkpoint
from train.config import ConfigError, TrainConfig, config_from_dict
from train.model import DataSpec, build_model
from train.ngram import token_stride

__all__ = [
    "CALIBRATION_NAME",
    "ClassTable",
    "LoadedRun",
    "Scores",
    "load_run",
    "score_dataset",
    "score_reads",
    "pair_log_probs",
    "is_dataset",
    "check_inputs",
    "PAIR_MODES",
]

CALIBRATION_NAME = "calibration.json"
PAIR_MODES = ("auto", "on", "off")
DEFAULT_BLOCK = 16384  # reads per parsed block: bounded memory, big enough to amortise the parse
MAX_RECORD_BYTES = 1 << 20  # a longer record (no read is) is skipped as too_long, never held whole
SKIP_REASONS = ANY_SKIP_REASONS


@dataclass(frozen=True)
class ClassTable:
    """Label index -> identity, as the run's training set defined it."""

    class_ids: np.ndarray  # (C,) int64 header class ids
    tax_ids: np.ndarray  # (C,) int64 NCBI tax ids (0 if unknown)
    names: list[str]  # (C,) species names

    def __len__(self) -> int:
        return len(self.names)

    def labels_of(self, class_ids: np.ndarray) -> np.ndarray:
        """(n,) int64 run label of each header class id, -1 where the run has no such class."""
        cid = np.asarray(class_ids, dtype=np.int64)
        order = np.argsort(self.class_ids, kind="stable")
        sorted_ids = self.class_ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, cid), 0, max(len(sorted_ids) - 1, 0))
        hit = sorted_ids[pos] == cid if len(sorted_ids) else np.zeros(cid.shape, dtype=bool)
        return np.where(hit, order[pos], -1).astype(np.int64)


@dataclass
class LoadedRun:
    """A trained run ready to score reads (model in eval mode on ``device``)."""

    run_dir: Path
    model: torch.nn.Module
    device: torch.device
    classes: ClassTable
    tokenizer_info: dict[str, Any]
    max_length: int
    pad_id: int
    temperature: float = 1.0
    calibration: dict[str, Any] = field(default_factory=dict)  # calibration.json as read ({} when absent)
    config: TrainConfig | None = None
    step: int = 0

    @property
    def threshold(self) -> float | None:
        """The calibrated confidence threshold of ``calibration.json``, if it has one."""
        t = self.calibration.get("threshold")
        return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None

    def identity(self) -> dict[str, Any]:
        """What names this run in reports: directory, step, architecture, tokenizer, classes."""
        mc = self.config.model if self.config is not None else None
        return {"run_dir": str(self.run_dir), "step": self.step, "arch": mc.arch if mc else None,
                "pretrained": mc.pretrained if mc else None, "lora": bool(mc and mc.lora),
                "tokenizer": {k: self.tokenizer_info.get(k) for k in ("name", "sha256", "vocab_size")},
                "max_length": self.max_length, "num_classes": len(self.classes),
                "temperature": self.temperature}


@dataclass
class Scores:
    """One block of scored reads."""

    log_probs: np.ndarray  # (n, C) float32 log-softmax of logits / temperature
    labels: np.ndarray | None  # (n,) int64 run label, -1 where the class id is not the run's (None: unlabelled)
    fragment: np.ndarray  # (n,) int64 pair key: equal for mates of one fragment, unique otherwise
    record: np.ndarray  # (n,) int64 record number (0-based) in its input
    source: np.ndarray  # (n,) int32 index of the input
    read_ids: list[str] | None
    skipped: dict[str, int] = field(default_factory=dict)  # records of this block not scored, by reason

    def __len__(self) -> int:
        return int(self.log_probs.shape[0])


# -- loading a run -------------------------------------------------------------------------

def _run_error(run_dir: Path, what: str) -> FormatError:
    return FormatError(f"{run_dir}: {what}. Give the --out directory of a finished `python -m train` run "
                       "(it holds config.json and checkpoint.pt).")


def _data_identity(run_dir: Path, cfg: TrainConfig, ck: dict[str, Any]) -> dict[str, Any]:
    """Tokenizer, max length and class table of the run: from the checkpoint when it records them
    (``ck["data"]``), else from the manifest of the training set the config names."""
    data = ck.get("data")
    if isinstance(data, dict) and {"tokenizer", "max_length", "label_names", "label_class_ids"} <= set(data):
        return data
    manifest = Path(str(cfg.data.train)) / "manifest.json" if cfg.data.train else None
    if manifest is None or not manifest.is_file():
        raise _run_error(run_dir, f"its checkpoint does not record the class table and the training set's "
                                  f"manifest ({manifest}) is not there any more; restore that dataset at this path")
    try:
        return json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{manifest}: unreadable manifest of the run's training set ({exc})") from None


def _class_table(source: str, data: dict[str, Any]) -> ClassTable:
    try:
        names = [str(x) for x in data["label_names"]]
        cids = np.asarray(data["label_class_ids"], dtype=np.int64)
        tax = np.asarray(data.get("label_tax_ids") or [0] * len(names), dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{source}: no usable class table ({type(exc).__name__}: {exc})") from None
    if not (len(names) == cids.size == tax.size) or not names:
        raise FormatError(f"{source}: the class table's names, class ids and tax ids differ in length")
    return ClassTable(class_ids=cids, tax_ids=np.where(tax < 0, 0, tax), names=names)


def read_calibration(run_dir: Path) -> dict[str, Any]:
    """``RUN/calibration.json`` checked: a JSON object with a positive finite ``temperature`` and
    an optional ``threshold`` in [0, 1]; ``{}`` when the file is absent.

    Raises:
        FormatError: the file is there but unreadable or holds other values (names the file).
    """
    path = run_dir / CALIBRATION_NAME
    if not path.exists():
        return {}
    fix = (f"Rerun `python -m train evaluate {run_dir} VAL_DATA --out DIR` to write it again, or delete it "
           "to predict uncalibrated.")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable JSON calibration ({type(exc).__name__}: {exc}). {fix}") from None
    if not isinstance(raw, dict):
        raise FormatError(f"{path}: expected a JSON object with a temperature. {fix}")
    t = raw.get("temperature", 1.0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise FormatError(f"{path}: temperature {t!r} is not a positive number. {fix}")
    for key in ("threshold", "pair_threshold"):
        thr = raw.get(key)
        if thr is not None and (isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0 <= thr <= 1):
            raise FormatError(f"{path}: {key} {thr!r} is not a probability in [0, 1]. {fix}")
    return raw


def pick_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a FormatError (exit 2)."""
    if device not in ("auto", "cpu", "cuda"):
        raise FormatError(f"--device {device!r}: choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise FormatError("--device cuda: no CUDA device is available here; use --device auto or cpu")
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


def load_run(run_dir: str | Path, *, device: str = "auto", strict_calibration: bool = True) -> LoadedRun:
    """Rebuild a trained run's model, class table and tokenizer identity.

    Args:
        run_dir: the ``--out`` directory of ``python -m train``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        strict_calibration: a ``calibration.json`` that is there but bad is an error (else
            it is ignored: temperature 1.0).

    Raises:
        FormatError: missing or unusable config, checkpoint, class table or calibration
            (one paragraph naming the file).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise _run_error(run_dir, "no such directory")
    cfg_path, ck_path = run_dir / "config.json", run_dir / "checkpoint.pt"
    for p in (cfg_path, ck_path):
        if not p.is_file():
            raise _run_error(run_dir, f"{p.name} is missing")
    try:
        cfg = config_from_dict(json.loads(cfg_path.read_text()), where=str(cfg_path))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ConfigError is a ValueError
        raise FormatError(f"{cfg_path}: not a usable run config ({exc})") from None
    ck = load_checkpoint(ck_path)
    data = _data_identity(run_dir, cfg, ck)
    classes = _class_table(str(ck_path), data)
    tok = dict(data["tokenizer"])
    max_length, pad_id = int(data["max_length"]), int(tok["pad_id"])
    spec = DataSpec(vocab_size=int(tok["vocab_size"]), pad_id=pad_id, num_labels=len(classes), max_length=max_length,
                    token_stride=token_stride(tok))
    lora = cfg.model.lora is not None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)  # LoRA checkpoints hold only adapters: the frozen body is rebuilt
        try:
            model = build_model(cfg.model, spec)
        except ConfigError as exc:
            raise FormatError(f"{cfg_path}: cannot rebuild the run's model ({exc})") from None
    try:
        missing, unexpected = model.load_state_dict(ck["model"], strict=not lora)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise FormatError(f"{ck_path}: the checkpoint does not fit the model {cfg_path.name} describes ({first})") from None
    if unexpected:
        raise FormatError(f"{ck_path}: the checkpoint does not fit the model {cfg_path.name} describes "
                          f"(unexpected weights {unexpected[:3]})")
    try:
        calibration = read_calibration(run_dir)
    except FormatError:
        if strict_calibration:
            raise
        calibration = {}
    dev = pick_device(device)
    model = model.to(dev).eval()
    return LoadedRun(run_dir=run_dir, model=model, device=dev, classes=classes, tokenizer_info=tok,
                     max_length=max_length, pad_id=pad_id, temperature=float(calibration.get("temperature", 1.0)),
                     calibration=calibration, config=cfg, step=int(ck["step"]))


def run_tokenizer(run: LoadedRun) -> ReadTokenizer:
    """The run's tokenizer, loaded by the converter's code and checked by sha256.

    Raises:
        FormatError: it cannot be loaded here, or the file found has other contents.
    """
    info = run.tokenizer_info
    specs = [str(info.get("name"))]
    if run.config is not None and run.config.data.tokenizer:
        specs.insert(0, run.config.data.tokenizer)
    last = ""
    for spec in specs:
        try:
            tok = load_tokenizer(spec)
        except TokenizerError as exc:
            last = str(exc)
            continue
        if tok.info.get("sha256") == info.get("sha256"):
            return tok
        last = f"{spec!r} has sha256 {tok.info.get('sha256')}, the run was trained with {info.get('sha256')}"
    raise FormatError(f"{run.run_dir}: the run's tokenizer {info.get('name')!r} is not available here ({last}); "
                      "predict needs the exact tokenizer the training set was converted with")


# -- the model ------------------------------------------------------------------------------

def _autocast(dev: torch.device) -> contextlib.AbstractContextManager:
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_batch_size(run: LoadedRun) -> int:
    """Reads per forward pass: large on a GPU (inference holds no activations for backward); on a
    CPU 64 for the transformers (their activations stay in cache), or what the model asks for."""
    return 1024 if run.device.type == "cuda" else int(getattr(run.model, "cpu_batch_size", 64))


@torch.inference_mode()
def forward_log_probs(run: LoadedRun, ids: np.ndarray, lengths: np.ndarray, batch_size: int) -> np.ndarray:
    """(n, C) float32 log-softmax of ``logits / temperature`` for padded int16 ``ids`` (n, L)."""
    n = ids.shape[0]
    out = np.empty((n, len(run.classes)), dtype=np.float32)
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), ids.shape[1])
    # Batches of similar lengths, each trimmed to its longest read: less padding to compute
    # (reads of 100-150 bp: ~20% fewer positions); the masked padding does not change a read's scores.
    order = np.argsort(lengths, kind="stable")
    for a in range(0, n, batch_size):
        rows = order[a : a + batch_size]
        ln = lengths[rows]
        width = max(1, int(ln.max()))
        x = torch.from_numpy(ids[rows, :width].astype(np.int64))
        mask = torch.from_numpy((np.arange(width)[None, :] < ln[:, None]).astype(np.int64))
        x, mask = x.to(run.device, non_blocking=True), mask.to(run.device, non_blocking=True)
        with _autocast(run.device):
            logits = run.model(input_ids=x, attention_mask=mask).logits
        lp = torch.log_softmax(logits.float() / run.temperature, dim=-1)
        out[rows] = lp.cpu().numpy()
    return out


# -- pairing -------------------------------------------------------------------------------

def pair_log_probs(log_probs: np.ndarray, fragment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Combine the reads of each fragment: summed log-probabilities, renormalised.

    Returns:
        ``(fragment_log_probs (m, C), inverse (n,))``: ``fragment_log_probs[inverse[i]]`` is
        the call read ``i`` gets; fragments are in order of first appearance.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    uniq, first, inverse = np.unique(np.asarray(fragment), return_index=True, return_inverse=True)
    rank = np.empty(uniq.size, dtype=np.int64)  # appearance order of each unique key
    rank[np.argsort(first, kind="stable")] = np.arange(uniq.size)
    inverse = rank[inverse.reshape(-1)]
    summed = np.zeros((uniq.size, lp.shape[1]), dtype=np.float64)
    np.add.at(summed, inverse, lp)
    summed -= summed.max(axis=1, keepdims=True)
    summed -= np.log(np.exp(summed).sum(axis=1, keepdims=True))
    return summed.astype(np.float32), inverse.astype(np.int64)


def _pair_keys(cand: np.ndarray, n: int, base: int) -> np.ndarray:
    """Fragment keys for ``n`` reads in order where ``cand[i]`` says reads ``i`` and ``i+1`` may be mates;
    pairs are taken greedily left to right without overlaps (a read joins at most one pair)."""
    frag = base + np.arange(n, dtype=np.int64)
    idx = np.flatnonzero(cand)
    if idx.size:
        run_start = np.r_[True, idx[1:] != idx[:-1] + 1]
        run_id = np.cumsum(run_start) - 1
        pos_in_run = np.arange(idx.size) - np.flatnonzero(run_start)[run_id]
        take = np.zeros(n - 1, dtype=bool)
        take[idx[pos_in_run % 2 == 0]] = True
        frag[1:][take] = frag[:-1][take]
    return frag


def adjacent_fragments(mate: np.ndarray, name_hash: np.ndarray, base: int, *, force: bool = False) -> np.ndarray:
    """Fragment keys of reads in order: reads ``i`` and ``i+1`` are mates when they share a fragment
    name and are marked ``/1`` then ``/2`` (``force``: any two adjacent reads sharing a name). Keys are
    ``base`` + index of the fragment's first read, so they stay unique across blocks."""
    n = mate.size
    if n < 2:
        return base + np.arange(n, dtype=np.int64)
    same = name_hash[1:] == name_hash[:-1]
    cand = same if force else same & (mate[:-1] == 1) & (mate[1:] == 2)
    return _pair_keys(cand, n, base)


# -- parsing any FASTA/FASTQ headers -----------------------------------------------------------

@dataclass
class _Block:
    """Tokenized reads of one block, before the model."""

    ids: np.ndarray  # (n, L) int16
    lengths: np.ndarray  # (n,) token counts
    record: np.ndarray  # (n,) int64
    source: np.ndarray  # (n,) int32
    mate: np.ndarray  # (n,) int64
    name_hash: np.ndarray  # (n,) uint64
    class_id: np.ndarray  # (n,) int64, -1 unlabelled
    read_ids: list[str] | None
    skipped: dict[str, int] = field(default_factory=dict)
    fragment: np.ndarray | None = None
    done: float = 0.0  # progress (bytes or reads) when this block was made

    def __len__(self) -> int:
        return int(self.record.size)

    def take(self, sel: slice | np.ndarray) -> "_Block":
        """Rows ``sel`` (no skipped counts)."""
        ids = None if self.read_ids is None else (self.read_ids[sel] if isinstance(sel, slice)
                                                   else [self.read_ids[j] for j in np.asarray(sel).tolist()])
        return _Block(self.ids[sel], self.lengths[sel], self.record[sel], self.source[sel], self.mate[sel],
                      self.name_hash[sel], self.class_id[sel], ids, {},
                      None if self.fragment is None else self.fragment[sel], self.done)


def _concat(parts: list[_Block]) -> _Block:
    if len(parts) == 1:
        return parts[0]
    skipped: dict[str, int] = {}
    for p in parts:
        for k, v in p.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    ids = None if any(p.read_ids is None for p in parts) else [x for p in parts for x in p.read_ids]  # type: ignore[union-attr]
    frag = None if any(p.fragment is None for p in parts) else np.concatenate([p.fragment for p in parts])  # type: ignore[misc]
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return _Block(cat("ids"), cat("lengths"), cat("record"), cat("source"), cat("mate"), cat("name_hash"),
                  cat("class_id"), ids, skipped, frag, parts[-1].done)


def _parse_unit(unit: Any, tok: ReadTokenizer, max_length: int, source: int) -> _Block:
    from convert.fastx import unit_bytes

    data = unit_bytes(unit)
    rows, name_hash, record, problems, seq, offsets = parse_any(data, unit.fmt == "fastq", MAX_RECORD_BYTES)
    w = rows.shape[0]
    ids, counts = tok.encode(seq[: offsets[w]], offsets[: w + 1], max_length)
    read_ids = [data[a:b].decode("utf-8", "replace") for a, b in rows[:w, :2].tolist()]
    skipped = {r: int(c) for r, c in zip(SKIP_REASONS, problems.tolist()) if c}
    return _Block(ids, counts, record[:w] + unit.first_record, np.full(w, source, dtype=np.int32), rows[:w, 4].copy(),
                  name_hash[:w], rows[:w, 5].copy(), read_ids, skipped)


def _empty_block(max_length: int) -> _Block:
    z = np.empty(0, dtype=np.int64)
    return _Block(np.empty((0, max_length), dtype=np.int16), z, z, np.empty(0, dtype=np.int32), z,
                  np.empty(0, dtype=np.uint64), z, [], {})


# -- input streams ------------------------------------------------------------------------------

def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a readshard dataset directory (it holds ``manifest.json``)."""
    return Path(path).is_dir() and (Path(path) / "manifest.json").is_file()


class _Progress:
    """Bytes of the inputs consumed so far (the producer's side of the ETA)."""

    def __init__(self) -> None:
        self.done = 0.0

    def add(self, n: float) -> None:
        self.done += n


def _units(path: Path, source: int, block: int, prog: _Progress) -> Iterator[Any]:
    """The converter's units of one FASTA/FASTQ file; unusable input is a FormatError naming it."""
    from convert.fastx import InputError, iter_units

    try:
        yield from iter_units(path, source, block, progress=prog.add, max_record_bytes=MAX_RECORD_BYTES)
    except InputError as exc:
        raise FormatError(f"{exc}. Give FASTA or FASTQ reads (plain or gzip), or a readshard dataset "
                          "directory (it holds manifest.json).") from None


def _parsed(units: Iterable[Any], tok: ReadTokenizer, max_length: int, source: int, prog: _Progress) -> Iterator[_Block]:
    from convert.fastx import InputError

    for unit in units:
        try:
            b = _parse_unit(unit, tok, max_length, source)
        except InputError as exc:
            raise FormatError(str(exc)) from None
        b.done = prog.done
        yield b


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def take(self, n: int) -> int:
        base, self.n = self.n, self.n + n
        return base


def _with_fragments(blocks: Iterable[_Block], mode: str, counter: _Counter) -> Iterator[_Block]:
    """Give each read its fragment key (adjacent mates), holding a block's last read back when its
    mate may open the next block."""
    carry: _Block | None = None
    for b in blocks:
        if carry is not None:
            skipped = b.skipped
            b = _concat([carry, b])
            b.skipped = skipped
            carry = None
        n = len(b)
        frag = (adjacent_fragments(b.mate, b.name_hash, 0, force=mode == "on") if mode != "off"
                else np.arange(n, dtype=np.int64))
        if mode != "off" and n and frag[-1] == n - 1 and (mode == "on" or b.mate[-1] == 1):
            carry = b.take(slice(n - 1, n))
            main = b.take(slice(0, n - 1))
            main.skipped, b, frag = b.skipped, main, frag[: n - 1]
        b.fragment = frag + counter.take(len(b))
        yield b
    if carry is not None:
        carry.fragment = np.asarray([counter.take(1)], dtype=np.int64)
        yield carry


def _lockstep(pa: Iterator[_Block], pb: Iterator[_Block], mode: str, counter: _Counter, max_length: int) -> Iterator[_Block]:
    """Two files R1/R2 read together: record ``i`` of one and of the other are mates (``auto``: when
    their fragment names agree too). Both files' units cover the same record numbers."""
    import itertools

    for ba, bb in itertools.zip_longest(pa, pb):
        parts = [x for x in (ba, bb) if x is not None] or [_empty_block(max_length)]
        m = _concat(parts)
        order = np.lexsort((m.source, m.record))
        merged = m.take(order)
        merged.skipped, merged.done = m.skipped, m.done
        n = len(merged)
        cand = (merged.record[1:] == merged.record[:-1]) & (merged.source[1:] != merged.source[:-1])
        if mode == "auto":
            cand &= merged.name_hash[1:] == merged.name_hash[:-1]
        merged.fragment = _pair_keys(cand, n, 0) + counter.take(n) if n else np.empty(0, dtype=np.int64)
        yield merged


def _mate_files(a: _Block, b: _Block) -> bool:
    """Whether the first blocks of two files look like R1/R2 of the same fragments."""
    k = min(len(a), len(b))
    if k == 0:
        return False
    ra, rb = {int(r): h for r, h in zip(a.record[:k].tolist(), a.name_hash[:k].tolist())}, \
        dict(zip(b.record[:k].tolist(), b.name_hash[:k].tolist()))
    same = sum(1 for r, h in ra.items() if rb.get(r) == h)
    return same >= 0.9 * k


def _dataset_blocks(path: Path, run: LoadedRun, source: int, block: int, prog: _Progress, weight: float) -> Iterator[_Block]:
    """Rows of a converted dataset in stored order, in blocks, with the run's tokenizer checked."""
    from loaders import ShardDataset

    ds = ShardDataset(path, expect_tokenizer=run.tokenizer_info, expect_max_length=run.max_length)
    per_row = weight / max(len(ds), 1)
    try:
        for s in range(ds.num_shards):
            count = int(ds.shard_counts[s])
            if not count:
                continue
            vec = {k: ds.read_vector(s, k) for k in ("record_numbers", "mates", "fragment_hashes", "class_ids")}
            for a in range(0, count, block):
                n = min(block, count - a)
                rows = ds.read_rows(s, a, n)
                prog.add(n * per_row)
                yield _Block(np.ascontiguousarray(rows["input_ids"]), rows["lengths"].astype(np.int64),
                             vec["record_numbers"][a : a + n].astype(np.int64), np.full(n, source, dtype=np.int32),
                             vec["mates"][a : a + n].astype(np.int64), vec["fragment_hashes"][a : a + n].astype(np.uint64),
                             vec["class_ids"][a : a + n].astype(np.int64), None, {}, None, prog.done)
    finally:
        ds.close()


def _input_size(path: Path) -> float:
    if path.is_dir():
        return float(sum(p.stat().st_size for p in path.glob("shard-*.h5"))) or 1.0
    try:
        return float(path.stat().st_size) or 1.0
    except OSError:
        return 1.0


def _blocks(run: LoadedRun, paths: Sequence[Path], pairs: str, block: int, prog: _Progress) -> Iterator[_Block]:
    """Every input's blocks in order, with fragment keys (the producer thread's work)."""
    counter = _Counter()
    tok: ReadTokenizer | None = None
    files = [p for p in paths if not is_dataset(p)]
    if files:
        tok = run_tokenizer(run)
    if len(files) == 2 and len(paths) == 2 and pairs != "off":
        a = _parsed(_units(paths[0], 0, block, prog), tok, run.max_length, 0, prog)  # type: ignore[arg-type]
        b = _parsed(_units(paths[1], 1, block, prog), tok, run.max_length, 1, prog)  # type: ignore[arg-type]
        fa, fb = next(a, None), next(b, None)
        import itertools

        ha = itertools.chain([fa] if fa is not None else [], a)
        hb = itertools.chain([fb] if fb is not None else [], b)
        if pairs == "on" or (fa is not None and fb is not None and _mate_files(fa, fb)):
            yield from _lockstep(ha, hb, pairs, counter, run.max_length)
            return
        yield from _with_fragments(ha, pairs, counter)
        yield from _with_fragments(hb, pairs, counter)
        return
    for source, path in enumerate(paths):
        if is_dataset(path):
            stream = _dataset_blocks(path, run, source, block, prog, _input_size(path))
        else:
            stream = _parsed(_units(path, source, block, prog), tok, run.max_length, source, prog)  # type: ignore[arg-type]
        yield from _with_fragments(stream, pairs, counter)


def _background(gen: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``gen`` in a thread ``depth`` items ahead (the parse and tokenizer release the GIL)."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in gen:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(("error", exc))

    t = threading.Thread(target=work, name="readshard-parse", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def check_inputs(run: LoadedRun, paths: Sequence[str | Path], pairs: str = "auto") -> list[Path]:
    """Check every input before anything is written: FASTA/FASTQ by their first bytes, datasets by
    their manifest's tokenizer and length against the run's.

    Raises:
        FormatError: the first input that cannot be scored, named, with what to give instead.
    """
    from convert.fastx import InputError, sniff
    from loaders import ShardDataset

    if pairs not in PAIR_MODES:
        raise FormatError(f"--pairs {pairs!r}: choose one of {', '.join(PAIR_MODES)}")
    out = []
    for p in map(Path, paths):
        if is_dataset(p):
            ShardDataset(p, expect_tokenizer=run.tokenizer_info, expect_max_length=run.max_length).close()
        elif p.is_dir():
            raise FormatError(f"{p}: a directory without manifest.json; give FASTA/FASTQ files or a readshard dataset")
        else:
            try:
                sniff(p)
            except InputError as exc:
                raise FormatError(f"{exc}. Give FASTA or FASTQ reads (plain or gzip), or a readshard dataset "
                                  "directory (it holds manifest.json).") from None
        out.append(p)
    if not out:
        raise FormatError("no input given; name FASTA/FASTQ files or readshard datasets")
    return out


def score_reads(run: LoadedRun, paths: Sequence[str | Path], *, pairs: str = "auto", batch_size: int | None = None,
                progress: bool = True, block_size: int = DEFAULT_BLOCK) -> Iterator[Scores]:
    """Score FASTA/FASTQ files (any headers, plain or gzip) and/or readshard datasets, block by block.

    Args:
        run: from :func:`load_run`.
        paths: inputs, in order (``Scores.source`` indexes them).
        pairs: ``auto`` pairs adjacent ``/1`` ``/2`` mates (and two files whose names match,
            record by record); ``on`` also pairs adjacent reads sharing a name and two files
            record by record; ``off`` never pairs.
        batch_size: reads per forward pass (default: 1024 on a GPU, 64 on a CPU).
        progress: a progress bar (reads/s, ETA) on stderr.
        block_size: records per parsed block (memory is bounded by a few blocks).

    Raises:
        FormatError: an input that is not FASTA/FASTQ or a dataset, a dataset of another
            tokenizer or length, or a tokenizer that is not the run's.
    """
    inputs = check_inputs(run, paths, pairs)
    bs = batch_size or default_batch_size(run)
    prog = _Progress()
    total_bytes = sum(_input_size(p) for p in inputs)
    bar = None
    reads = 0
    try:
        for b in _background(_blocks(run, inputs, pairs, block_size, prog)):
            if progress and bar is None:  # opened with the first block: an input error comes alone
                from tqdm.auto import tqdm

                bar = tqdm(total=None, unit="read", unit_scale=True, desc="predict", dynamic_ncols=True,
                           file=sys.stderr, mininterval=1.0)
            lp = forward_log_probs(run, b.ids, b.lengths, bs)
            has_labels = bool((b.class_id >= 0).any())
            yield Scores(log_probs=lp, labels=run.classes.labels_of(b.class_id) if has_labels else None,
                         fragment=b.fragment if b.fragment is not None else np.arange(len(b), dtype=np.int64),
                         record=b.record, source=b.source, read_ids=b.read_ids, skipped=dict(b.skipped))
            reads += len(b)
            if bar is not None:
                if b.done > 0:  # reads expected from the bytes read so far
                    bar.total = max(reads, int(reads * total_bytes / b.done))
                bar.update(len(b))
    finally:
        if bar is not None:
            bar.close()


def score_dataset(run: LoadedRun, dataset_dir: str | Path, *, batch_size: int | None = None,
                  progress: bool = False, pairs: str = "auto") -> Iterator[Scores]:
    """Score a converted readshard dataset in stored order (see :func:`score_reads`); ``labels`` are
    the run's label indices of the reads' class ids (-1 where the run has no such class).

    Raises:
        FormatError: not a dataset, or converted with another tokenizer or max length.
    """
    if not is_dataset(dataset_dir):
        raise FormatError(f"{dataset_dir}: not a readshard dataset (no manifest.json); convert reads with "
                          "`python -m convert` first")
    for s in score_reads(run, [dataset_dir], pairs=pairs, batch_size=batch_size, progress=progress):
        if s.labels is None:
            s.labels = np.full(len(s), -1, dtype=np.int64)
        yield s
