"""Read tokenizers: a registry of small loaders, each giving an object with one batch API.

Every tokenizer encodes a *unit* of reads given as one ``bytes`` blob of concatenated,
upper-cased sequences plus ``(n+1,)`` offsets, into an ``(n, L)`` int16 matrix padded with
``pad_id`` and the untruncated token count of each read. Truncation keeps the closing
special token (as Hugging Face truncation does), so a truncated read still ends in EOS/SEP.

Registry names:

* ``metagene-1``: the real METAGENE-1 BPE (``tokenizer.json`` shipped in ``assets``); ids
  equal ``Tokenizer.encode(read).ids`` exactly (``[BOS] ... [EOS]``). Encoded by the exact
  numba BPE of :mod:`convert.bpe`; Hugging Face ``tokenizers`` encodes what it does not
  cover (another tokenizer shape, a read with bytes outside ``ACGTN``, numba missing).
* ``dnabert-6mer``: DNABERT's overlapping 6-mers from its ``vocab.txt``, ``[CLS] ... [SEP]``,
  vectorized in numpy; a k-mer with N becomes ``[UNK]``.
* ``dnabert-2``: the DNABERT-2-117M BPE ``tokenizer.json``.
* ``char``: one token per base (``A C G T N``), no special tokens added.
* any path to a ``tokenizer.json`` file or a local Hugging Face tokenizer directory.

Identity is by content: a path whose ``tokenizer.json`` / ``vocab.txt`` has the same sha256
as a registry tokenizer's file *is* that tokenizer (it loads as the registry one and records
the registry name), so converting with METAGENE-1's own ``tokenizer.json`` by path gives the
same dataset identity as ``--tokenizer metagene-1``. Readers compare sha256, not names
(:func:`identity`, :func:`shards.check_compatible`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from .cores import claim

__all__ = [
    "TokenizerError",
    "ReadTokenizer",
    "REGISTRY",
    "ASSETS",
    "load_tokenizer",
    "identity",
    "choose_max_length",
]

ASSETS = Path(__file__).resolve().parent / "assets" / "tokenizers"
INT16_MAX = int(np.iinfo(np.int16).max)


class TokenizerError(Exception):
    """A tokenizer that cannot be loaded or cannot be stored as int16."""


class ReadTokenizer(Protocol):
    """What the converter needs from a tokenizer."""

    info: dict[str, Any]

    def encode(self, seqs: bytes, offsets: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Encode reads ``seqs[offsets[i]:offsets[i+1]]`` into ``(ids (n, L) int16, full_lengths (n,) int32)``.

        ``seqs`` is bytes-like: ``bytes`` or a contiguous uint8 array.
        """

    def decode(self, ids: np.ndarray) -> str:
        """Bases of one read from its stored (unpadded) ids, special tokens dropped."""

    @property
    def gil_free(self) -> bool:
        """Whether :meth:`encode` of a large unit runs without the GIL (so units may run on threads)."""


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_int16(name: str, vocab_size: int, pad_id: int, real_ids: set[int]) -> None:
    if vocab_size - 1 > INT16_MAX:
        raise TokenizerError(
            f"tokenizer {name!r} has {vocab_size} tokens; ids above {INT16_MAX} do not fit the "
            "int16 token store. Use a tokenizer with a vocabulary of at most 32768 tokens."
        )
    if pad_id in real_ids:
        raise TokenizerError(f"tokenizer {name!r}: pad id {pad_id} is also a sequence token; choose another pad")


def _finish_rows(
    ids: np.ndarray, counts: np.ndarray, max_length: int, pad_id: int, tail_id: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter a flat id vector with per-read counts into a padded (n, L) int16 matrix."""
    n = counts.shape[0]
    out = np.full((n, max_length), pad_id, dtype=np.int16)
    if n == 0:
        return out, counts.astype(np.int32)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    kept = np.minimum(counts, max_length)
    row = np.repeat(np.arange(n), kept)
    col = np.arange(row.shape[0]) - np.repeat(np.cumsum(kept) - kept, kept)
    src = np.repeat(starts, kept) + col
    out[row, col] = ids[src]
    if tail_id is not None:
        trunc = counts > max_length
        out[trunc, max_length - 1] = tail_id
    return out, counts.astype(np.int32)


class BpeTokenizer:
    """A Hugging Face ``tokenizers`` model loaded from a ``tokenizer.json`` file, offline.

    ``engine="auto"`` encodes a batch of at least ``fast_min_reads`` reads with the exact
    fast BPE of :mod:`convert.bpe` when the tokenizer is in its scope (Hugging Face for the
    reads it does not handle); smaller batches, and ``engine="hf"``, use Hugging Face. The
    fast tables are built on first use (numba's start-up, ~0.3 s, pays off only on large
    units). Both give the same ids. ``encoder_note`` is a line for the user when the fast
    encoder is unavailable only because numba cannot be imported.
    """

    FAST_MIN_READS = 4096
    PART_MIN_READS = 8192  # an encode is split over idle cores in parts of at least this many reads

    def __init__(self, name: str, path: Path, engine: str = "auto", fast_min_reads: int | None = None) -> None:
        from tokenizers import Tokenizer

        from .bpe import NUMBA_ERROR, scope_problem

        path = Path(path)
        data = path.read_bytes()
        self._tok = Tokenizer.from_str(data.decode("utf-8"))
        self._path = path
        spec = json.loads(data)
        vocab = self._tok.get_vocab(with_added_tokens=True)
        config = _read_config(path.parent)
        special = {}
        for role in ("pad", "unk", "bos", "eos", "cls", "sep", "mask"):
            token = config.get(f"{role}_token") or f"[{role.upper()}]"
            special[role] = vocab.get(token)
        pad_id = special["pad"]
        if pad_id is None:
            raise TokenizerError(f"{path}: no pad token ([PAD] or pad_token in tokenizer_config.json)")
        special_ids = {v for v in special.values() if v is not None}
        self._special = np.array(sorted(special_ids), dtype=np.int64)
        # Template post-processors add BOS/EOS (METAGENE-1) or CLS/SEP (DNABERT-2); the last
        # one is re-placed at the end of a truncated read.
        tail = None
        post = spec.get("post_processor") or {}
        single = post.get("single") or []
        if single and "SpecialToken" in single[-1]:
            tail = vocab.get(single[-1]["SpecialToken"]["id"])
        self._tail = tail
        self.info = {
            "name": name,
            "kind": "bpe",
            "file": path.name,
            "sha256": _sha256_bytes(data),
            "vocab_size": int(self._tok.get_vocab_size(with_added_tokens=True)),
            "pad_id": int(pad_id),
            "special_ids": special,
        }
        _check_int16(name, self.info["vocab_size"], pad_id, set())
        self._engine = engine
        self._fast_min = self.FAST_MIN_READS if fast_min_reads is None else int(fast_min_reads)
        self._spec: dict[str, Any] | None = spec if engine == "auto" else None
        self._fast: Any = None
        self.encoder_note: str | None = None
        if self._spec is not None and NUMBA_ERROR is not None and scope_problem(spec) is None:
            self.encoder_note = (
                f"readshard: numba cannot be imported ({NUMBA_ERROR}); "
                "tokenizing with Hugging Face tokenizers instead (slower)"
            )

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.info["name"], "path": str(self._path), "engine": self._engine, "fast_min": self._fast_min}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"], Path(state["path"]), state["engine"], state["fast_min"])

    @property
    def gil_free(self) -> bool:
        """Units of at least :attr:`fast_min_reads` reads go through the numba encoder, which
        releases the GIL (Hugging Face's per-read loop does not)."""
        return self.encoder == "fast-bpe"

    @property
    def fast_min_reads(self) -> int:
        """Smaller batches are encoded by Hugging Face (no JIT load for a handful of reads)."""
        return self._fast_min

    @property
    def encoder(self) -> str:
        """``"fast-bpe"`` if large batches use the fast encoder, else ``"hf"`` (builds it)."""
        return "fast-bpe" if self._fast_encoder() is not None else "hf"

    def _fast_encoder(self) -> Any:
        """The :class:`convert.bpe.FastBpe`, built on first use; None if out of scope."""
        if self._spec is not None:
            from .bpe import build_fast_bpe

            tok = self._tok
            fast = build_fast_bpe(
                self._spec,
                tok.get_vocab(with_added_tokens=True),
                lambda strings: [e.ids for e in tok.encode_batch(strings, add_special_tokens=False)],
            )
            self._fast = None if isinstance(fast, str) else fast
            self._spec = None
        return self._fast

    def encode(self, seqs: bytes, offsets: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`ReadTokenizer`."""
        fast = self._fast_encoder() if offsets.shape[0] - 1 >= self._fast_min else None
        if fast is None:
            return self._encode_hf(seqs, offsets, max_length, None)
        # Cores no other encode uses now (the max-length sample, the last units of a run).
        with claim((offsets.shape[0] - 1) // self.PART_MIN_READS) as parts:
            out, counts, unhandled = fast.encode(seqs, offsets, max_length, self.info["pad_id"], self._tail, parts)
        if unhandled.size:  # bytes outside ACGTN: Hugging Face's own rules (e.g. [UNK] per lowercase letter)
            self._encode_hf(seqs, offsets, max_length, unhandled, out, counts)
        return out, counts

    def _encode_hf(
        self,
        seqs: bytes,
        offsets: np.ndarray,
        max_length: int,
        rows: np.ndarray | None,
        out: np.ndarray | None = None,
        counts: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hugging Face ``Tokenizer.encode`` for ``rows`` (all if None) into ``out``/``counts``."""
        text = bytes(seqs).decode("ascii")  # bytes-like: bytes or a uint8 array
        n = offsets.shape[0] - 1
        if out is None or counts is None:
            out = np.full((n, max_length), self.info["pad_id"], dtype=np.int16)
            counts = np.empty(n, dtype=np.int32)
        encode = self._tok.encode
        off = offsets.tolist()
        last = max_length - 1
        tail = self._tail
        # Row by row into the preallocated matrix: no list of every id of the unit.
        for i in range(n) if rows is None else rows.tolist():
            ids = encode(text[off[i] : off[i + 1]]).ids
            k = len(ids)
            counts[i] = k
            if k <= max_length:
                out[i, :k] = ids
            else:
                out[i] = ids[:max_length]
                if tail is not None:
                    out[i, last] = tail
        return out, counts

    def decode(self, ids: np.ndarray) -> str:
        """See :class:`ReadTokenizer`."""
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[~np.isin(ids, self._special)]
        return "".join(self._tok.decode(ids.tolist(), skip_special_tokens=False).split())


class KmerTokenizer:
    """DNABERT (v1) overlapping k-mers: ``[CLS] kmer_0 ... kmer_{n-k} [SEP]`` from ``vocab.txt``."""

    gil_free = True  # numpy table lookups, or the compiled kernel, over the whole unit
    #: From this many reads ``encode`` takes the compiled kernel (:mod:`convert.kmer`): below it,
    #: importing numba would cost more than the numpy path.
    KERNEL_MIN_READS = 1024

    def __init__(self, name: str, path: Path, k: int = 6) -> None:
        path = Path(path)
        data = path.read_bytes()
        tokens = data.decode("utf-8").split()
        vocab = {t: i for i, t in enumerate(tokens)}
        self.k = k
        # Map each k-mer code (base-4 in ACGT order) to its vocab id; the file's own order differs.
        codes = np.arange(4**k)
        table = np.empty(4**k, dtype=np.int16)
        for code in codes.tolist():
            kmer = "".join("ACGT"[(code >> (2 * (k - 1 - j))) & 3] for j in range(k))
            if kmer not in vocab:
                raise TokenizerError(f"{path}: k-mer {kmer} missing from the vocabulary")
            table[code] = vocab[kmer]
        self._table = table
        self._inverse = {i: t for t, i in vocab.items()}
        special = {role: vocab.get(f"[{role.upper()}]") for role in ("pad", "unk", "bos", "eos", "cls", "sep", "mask")}
        self._special = special
        self._path = path
        self.info = {
            "name": name,
            "kind": "kmer",
            "k": k,
            "file": path.name,
            "sha256": _sha256_bytes(data),
            "vocab_size": len(tokens),
            "pad_id": int(special["pad"]),
            "special_ids": special,
        }
        _check_int16(name, len(tokens), special["pad"], set(table.tolist()))

    def encode(self, seqs: bytes, offsets: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`ReadTokenizer`."""
        if offsets.shape[0] - 1 >= self.KERNEL_MIN_READS:
            from convert.kmer import kmer_rows

            sp = self._special
            rows = kmer_rows(seqs, offsets, base_code=_BASE_CODE, table=self._table, k=self.k, unk=sp["unk"],
                             cls=sp["cls"], sep=sp["sep"], pad=self.info["pad_id"], max_length=max_length)
            if rows is not None:
                return rows
        return self.encode_numpy(seqs, offsets, max_length)

    def encode_numpy(self, seqs: bytes, offsets: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode` in numpy alone (small batches, or no numba)."""
        k = self.k
        base = _BASE_CODE[np.frombuffer(seqs, dtype=np.uint8)]
        n = offsets.shape[0] - 1
        lens = np.diff(offsets)
        nk = np.maximum(lens - k + 1, 0)
        total = base.shape[0]
        # code[i] = k-mer starting at i; bad[i] = it contains a non-ACGT base.
        m = max(total - k + 1, 0)
        code = np.zeros(m, dtype=np.int64)
        bad = np.zeros(m, dtype=bool)
        for j in range(k):
            b = base[j : j + m]
            code = (code << 2) | (b & 3)
            bad |= b > 3
        ids_all = np.where(bad, self._special["unk"], self._table[code]).astype(np.int16)
        # Gather each read's k-mer positions [start, start+nk) and frame with CLS/SEP.
        starts = np.repeat(offsets[:-1], nk) + (np.arange(int(nk.sum())) - np.repeat(np.cumsum(nk) - nk, nk))
        body = ids_all[starts]
        counts = nk + 2
        flat = np.empty(int(counts.sum()), dtype=np.int16)
        pos = np.zeros(n, dtype=np.int64)
        np.cumsum(counts[:-1], out=pos[1:])
        flat[pos] = self._special["cls"]
        flat[pos + counts - 1] = self._special["sep"]
        body_pos = np.repeat(pos + 1, nk) + (np.arange(body.shape[0]) - np.repeat(np.cumsum(nk) - nk, nk))
        flat[body_pos] = body
        return _finish_rows(flat, counts, max_length, self.info["pad_id"], self._special["sep"])

    def decode(self, ids: np.ndarray) -> str:
        """See :class:`ReadTokenizer`."""
        specials = {v for v in self._special.values() if v is not None}
        kmers = [self._inverse[int(i)] for i in ids if int(i) not in specials]
        if not kmers:
            return ""
        return "".join(km[0] for km in kmers[:-1]) + kmers[-1]


_CHAR_VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "A", "C", "G", "T", "N")
# Base codes for k-mers: A0 C1 G2 T3, anything else (N) 4.
_BASE_CODE = np.full(256, 4, dtype=np.int64)
for _i, _b in enumerate(b"ACGT"):
    _BASE_CODE[_b] = _i


class CharTokenizer:
    """One token per base; no special tokens added."""

    gil_free = True  # one numpy table lookup over the whole unit

    def __init__(self, name: str = "char") -> None:
        table = np.full(256, 1, dtype=np.int16)  # [UNK]
        for i, tok in enumerate(_CHAR_VOCAB):
            if len(tok) == 1:
                table[ord(tok)] = i
        self._table = table
        special = {"pad": 0, "unk": 1, "bos": None, "eos": None, "cls": 2, "sep": 3, "mask": 4}
        self.info = {
            "name": name,
            "kind": "char",
            "sha256": _sha256_bytes(" ".join(_CHAR_VOCAB).encode()),
            "vocab_size": len(_CHAR_VOCAB),
            "pad_id": 0,
            "special_ids": special,
        }

    def encode(self, seqs: bytes, offsets: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`ReadTokenizer`."""
        flat = self._table[np.frombuffer(seqs, dtype=np.uint8)]
        return _finish_rows(flat, np.diff(offsets), max_length, 0, None)

    def decode(self, ids: np.ndarray) -> str:
        """See :class:`ReadTokenizer`."""
        return "".join(_CHAR_VOCAB[int(i)] for i in ids if int(i) >= 5)


def _read_config(directory: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        p = directory / name
        if p.is_file():
            try:
                for key, value in json.loads(p.read_text()).items():
                    if isinstance(value, dict):  # {"content": "[PAD]", ...}
                        value = value.get("content")
                    if isinstance(value, str):
                        merged.setdefault(key, value)
            except ValueError:
                pass
    return merged


REGISTRY: dict[str, Callable[[], ReadTokenizer]] = {
    "metagene-1": lambda: BpeTokenizer("metagene-1", ASSETS / "metagene-1" / "tokenizer.json"),
    "dnabert-2": lambda: BpeTokenizer("dnabert-2", ASSETS / "dnabert-2-117m" / "tokenizer.json"),
    "dnabert-6mer": lambda: KmerTokenizer("dnabert-6mer", ASSETS / "dnabert-6mer" / "vocab.txt", k=6),
    "char": lambda: CharTokenizer("char"),
}


# Registry name -> the file whose sha256 is its identity (char has no file).
_REGISTRY_FILES = {
    "metagene-1": ASSETS / "metagene-1" / "tokenizer.json",
    "dnabert-2": ASSETS / "dnabert-2-117m" / "tokenizer.json",
    "dnabert-6mer": ASSETS / "dnabert-6mer" / "vocab.txt",
}
_REGISTRY_SHA: dict[str, str] = {}


def _registry_name_of(file: Path) -> str | None:
    """The registry tokenizer whose file has the same bytes as ``file``, if any."""
    try:
        size = file.stat().st_size
        candidates = [n for n, p in _REGISTRY_FILES.items() if p.is_file() and p.stat().st_size == size]
        if not candidates:
            return None
        digest = _sha256_bytes(file.read_bytes())
    except OSError:
        return None
    for name in candidates:
        if name not in _REGISTRY_SHA:
            _REGISTRY_SHA[name] = _sha256_bytes(_REGISTRY_FILES[name].read_bytes())
        if _REGISTRY_SHA[name] == digest:
            return name
    return None


def identity(spec: str) -> dict[str, Any]:
    """``{"name", "sha256"}`` of a tokenizer spec (registry name or path), for compatibility checks.

    Raises:
        TokenizerError: as :func:`load_tokenizer`.
    """
    info = load_tokenizer(spec).info
    return {"name": info["name"], "sha256": info["sha256"]}


def load_tokenizer(spec: str) -> ReadTokenizer:
    """Load a tokenizer by registry name, ``tokenizer.json`` path, or local HF tokenizer directory.

    A file identical to a registry tokenizer's loads as that registry tokenizer (same name).

    Raises:
        TokenizerError: unknown name, unreadable file, or a vocabulary that does not fit int16.
    """
    if spec in REGISTRY:
        return REGISTRY[spec]()
    path = Path(os.path.expanduser(spec))
    for file in (path, path / "tokenizer.json", path / "vocab.txt"):
        if file.is_file():
            same = _registry_name_of(file)
            if same is not None:
                return REGISTRY[same]()
            break
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return BpeTokenizer(path.name, path / "tokenizer.json")
        if (path / "vocab.txt").is_file():
            return KmerTokenizer(path.name, path / "vocab.txt")
        raise TokenizerError(f"{path}: no tokenizer.json or vocab.txt in this directory")
    if path.is_file():
        try:
            return BpeTokenizer(path.stem, path)
        except (ValueError, Exception) as exc:  # tokenizers raises plain Exception on bad JSON
            if isinstance(exc, TokenizerError):
                raise
            raise TokenizerError(f"{path}: not a Hugging Face tokenizer.json ({exc})") from None
    raise TokenizerError(
        f"unknown tokenizer {spec!r}: use one of {', '.join(sorted(REGISTRY))}, "
        "a tokenizer.json file, or a local Hugging Face tokenizer directory"
    )


def choose_max_length(full_lengths: np.ndarray, coverage: float = 0.9999, multiple: int = 8) -> int:
    """Smallest multiple of ``multiple`` covering ``coverage`` of the measured token lengths."""
    if full_lengths.size == 0:
        return multiple
    # The k-th smallest length, k = ceil(coverage * n): at least `coverage` of reads fit.
    k = max(1, int(np.ceil(coverage * full_lengths.size - 1e-9)))
    q = int(np.partition(np.asarray(full_lengths), k - 1)[k - 1])
    return max(multiple, -(-q // multiple) * multiple)
