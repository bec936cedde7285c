"""Exact fast BPE for read tokenizers (METAGENE-1, DNABERT-2 and tokenizers of their shape).

Hugging Face BPE merges the adjacent pair of smallest (merge rank, position) until none is
left. For a read over a small alphabet the result is also the unique split of the read into
tokens that (a) each encode to themselves and (b) are pairwise *compatible*: BPE on the
concatenation of two neighbours gives exactly that pair. This is the idea of the ``bpe``
crate in GitHub's rust-gems; the encoder here follows it, written for numba:

* compatibility of ``(x, y)`` is decided by undoing the merges that built ``x`` and ``y``,
  latest first, and checking at every step that no merge across the split point would
  have fired earlier (a rank below the merge being undone; on a tie of ranks the left
  merge wins, as in Hugging Face); for vocabularies of up to 2,048 tokens over the alphabet
  (METAGENE-1) every pair is decided once when the tables are built and looked up after;
* the encoder walks the read left to right taking the longest token that starts here and
  is compatible with the previous one, else the next shorter prefix token, and backtracks
  (marking the dead end) when none is left.

Scope (anything else is not built and the caller keeps Hugging Face): a ``BPE`` model
without dropout, subword prefixes/suffixes or byte fallback; no normalizer (or a Unicode
normalization, a no-op on ASCII); ``Whitespace``/``WhitespaceSplit`` or no pre-tokenizer; a
``TemplateProcessing`` (specials around one sequence) or no post-processor; no truncation
or padding configured in the file; no added token that could match inside a read; merges
whose token strings are unique and built from earlier merges. Reads are handled when every
byte is one of ``A C G T N``; a base that is not in the vocabulary becomes the unknown
token (and, like in Hugging Face, blocks merges). A read with any other byte (lowercase,
punctuation, whitespace) is reported back unhandled, and the caller encodes it with
Hugging Face. The tables are built in memory from the parsed ``tokenizer.json`` in tens of
milliseconds; nothing is cached on disk except numba's compiled code (numba's own cache,
beside this module or in the user's cache directory).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .cores import budget, claim, run_parts

__all__ = ["FastBpe", "NUMBA_ERROR", "build_fast_bpe", "scope_problem"]

try:  # numba is a regular dependency; without it the converter falls back to Hugging Face.
    import numba

    NUMBA_ERROR: str | None = None
except Exception as _exc:  # ImportError, or a broken llvmlite install
    numba = None
    NUMBA_ERROR = f"{type(_exc).__name__}: {_exc}"

ALPHABET = b"ACGTN"
# Up to here pairs and their compatibility sit in dense T x T tables (int16 + uint8: 50 MB at
# most, built once per process in ~0.25 s on 2 cores for DNABERT-2's 4,091 tokens); larger
# vocabularies use the pair hash and decide compatibility when a pair is met.
DENSE_MAX_TOKENS = 4096
_UNHANDLED = -1
_UNK = -2
_NO_NORMALIZE = {"NFC", "NFD", "NFKC", "NFKD"}
_PRE_TOKENIZERS = {"Whitespace", "WhitespaceSplit"}


class FastBpe:
    """A BPE tokenizer's tables and the numba encoder that uses them.

    Build one with :func:`build_fast_bpe`; call :meth:`encode`.
    """

    def __init__(self, tables: dict[str, Any]) -> None:
        self._t = tables
        self.prefix = tables["prefix"]
        self.suffix = tables["suffix"]

    @property
    def dense(self) -> bool:
        """Whether pairs and their compatibility are dense tables (see :data:`DENSE_MAX_TOKENS`)."""
        return self._t["compat"].size > 0

    def encode(
        self, seqs: bytes, offsets: np.ndarray, max_length: int, pad_id: int, tail_id: int | None, parts: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encode reads ``seqs[offsets[i]:offsets[i+1]]`` as Hugging Face would.

        ``parts`` > 1 splits the rows into that many ranges encoded at once on threads
        (:func:`convert.cores.run_parts`; the encoder runs outside the GIL); the result is
        the same.

        Returns:
            ``(ids (n, max_length) int16, full_lengths (n,) int32, unhandled (k,) int64)``:
            rows are padded with ``pad_id``; a read longer than ``max_length`` tokens keeps
            its first ``max_length`` and, if ``tail_id`` is given, ends in it. The rows of
            ``unhandled`` reads (a byte outside ``A C G T N``) are left as padding.
        """
        t = self._t
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        n = offsets.shape[0] - 1
        out = np.full((n, max_length), pad_id, dtype=np.int16)
        counts = np.zeros(n, dtype=np.int32)
        handled = np.ones(n, dtype=np.bool_)
        if n:
            seq = np.frombuffer(seqs, dtype=np.uint8)
            tail = -1 if tail_id is None else int(tail_id)

            def rows(lo: int, hi: int) -> None:
                _encode_reads(
                    seq, offsets[lo : hi + 1], t["code"], t["children"], t["node_tok"], t["tok_len"],
                    t["next_prefix"], t["left"], t["right"], t["hkeys"], t["hvals"], t["compat"], t["out_id"],
                    t["unk_id"], t["prefix"], t["suffix"], tail, out[lo:hi], counts[lo:hi], handled[lo:hi],
                )

            if parts > 1:
                rows(0, 0)  # numba loads the compiled code once, here, not in each part's thread at once
            run_parts(rows, n, parts)
        return out, counts, np.flatnonzero(~handled)


def build_fast_bpe(
    spec: dict[str, Any], vocab: dict[str, int], oracle: Callable[[list[str]], list[list[int]]] | None = None
) -> FastBpe | str:
    """Tables for ``spec`` (a parsed ``tokenizer.json``), or the reason it is out of scope.

    Args:
        spec: the parsed tokenizer file.
        vocab: token -> id with added tokens (``Tokenizer.get_vocab(True)``).
        oracle: optional batch encoder without special tokens (Hugging Face's): every token
            must encode to itself with it, as it must with the fast encoder.

    Returns:
        A :class:`FastBpe`, or a one-line reason when numba is missing or the tokenizer is
        not of the supported shape.
    """
    if numba is None:
        return f"numba cannot be imported ({NUMBA_ERROR})"
    why = scope_problem(spec)
    if why:
        return why
    model = spec["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if any(len(m) != 2 for m in merges):
        return "a merge is not a pair of tokens"
    unk = model.get("unk_token")
    if unk is not None and any(unk in m for m in merges):
        return "a merge involves the unknown token"
    # Internal ids: the alphabet's bases first, then merged tokens in merge-rank order, so
    # that a larger id always means a later merge (what _compatible relies on).
    strings = [chr(c) for c in ALPHABET if chr(c) in vocab]
    index = {s: i for i, s in enumerate(strings)}
    left, right = list(range(len(strings))), list(range(len(strings)))
    pairs: dict[tuple[int, int], int] = {}
    letters = set(ALPHABET.decode())
    for a, b in merges:
        if a not in index or b not in index:
            if set(a + b) <= letters:
                return f"merge {a!r} {b!r} uses a token that no earlier merge builds"
            continue  # a merge over other characters never applies to a read
        z = a + b
        if z in index or z not in vocab:
            return f"merge {a!r} {b!r}: its token is built twice or missing from the vocabulary"
        index[z] = len(strings)
        pairs[(index[a], index[b])] = len(strings)
        strings.append(z)
        left.append(index[a])
        right.append(index[b])
    if len(strings) >= 32768:
        return "more than 32767 tokens over the alphabet"
    unk_id = vocab.get(unk) if unk else None
    code = np.full(256, _UNHANDLED, dtype=np.int8)
    for i, c in enumerate(ALPHABET):
        if chr(c) in index:
            code[c] = i
        elif unk_id is not None and not model.get("fuse_unk"):
            code[c] = _UNK
    prefix, suffix = _template(spec, vocab)
    fast = FastBpe(_tables(strings, left, right, pairs, vocab, code, unk_id, prefix, suffix))
    # Like the crate: every token must encode to itself, else the tables are not exact.
    expect = [[vocab[s]] for s in strings]
    if oracle is not None and oracle(strings) != expect:
        return "a token does not encode to itself with Hugging Face"
    # A writable array, as the converter's units are: read-only bytes would make numba load
    # a second specialization of the encoder for this check alone (~5 ms).
    blob = np.frombuffer(bytearray("".join(strings).encode()), dtype=np.uint8)
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in strings], out=offsets[1:])
    width = int(np.diff(offsets).max()) + len(prefix) + len(suffix)
    ids, counts, _ = fast.encode(blob, offsets, width, -1, None)
    framed = [row[: k].tolist() for row, k in zip(ids, counts)]
    if [r[len(prefix) : len(r) - len(suffix)] for r in framed] != expect:
        return "a token does not encode to itself with the fast encoder"
    return fast


def scope_problem(spec: dict[str, Any]) -> str | None:
    """Why a parsed ``tokenizer.json`` is outside the fast encoder's scope, or None."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return f"model type {model.get('type')!r} is not BPE"
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return "BPE dropout or subword prefixes/suffixes"
    if model.get("byte_fallback") or model.get("ignore_merges"):
        return "byte_fallback or ignore_merges"
    norm = spec.get("normalizer")
    if norm is not None and not _all_types(norm, _NO_NORMALIZE):
        return f"normalizer {norm.get('type')!r}"
    pre = spec.get("pre_tokenizer")
    if pre is not None and not _all_types(pre, _PRE_TOKENIZERS):
        return f"pre-tokenizer {pre.get('type')!r}"
    if spec.get("truncation") or spec.get("padding"):
        return "truncation or padding configured in the tokenizer file"
    post = spec.get("post_processor")
    if post is not None and post.get("type") != "TemplateProcessing":
        return f"post-processor {post.get('type')!r}"
    for added in spec.get("added_tokens") or []:
        content = added.get("content", "")
        if content and all(c.upper() in ALPHABET.decode() for c in content):
            return f"added token {content!r} could match inside a read"
    return None


def _all_types(node: dict[str, Any], allowed: set[str]) -> bool:
    if node.get("type") == "Sequence":
        key = "normalizers" if "normalizers" in node else "pretokenizers"
        return all(_all_types(n, allowed) for n in node.get(key, []))
    return node.get("type") in allowed


def _template(spec: dict[str, Any], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ids the post-processor puts before and after a single read."""
    post = spec.get("post_processor")
    before: list[int] = []
    after: list[int] = []
    if post is not None:
        specials = post.get("special_tokens") or {}
        seen = False
        for piece in post.get("single") or []:
            if "Sequence" in piece:
                seen = True
                continue
            name = piece["SpecialToken"]["id"]
            ids = specials.get(name, {}).get("ids") or [vocab[name]]
            (after if seen else before).extend(int(i) for i in ids)
    return np.asarray(before, dtype=np.int32), np.asarray(after, dtype=np.int32)


def _tables(
    strings: list[str], left: list[int], right: list[int], pairs: dict[tuple[int, int], int],
    vocab: dict[str, int], code: np.ndarray, unk_id: int | None, prefix: np.ndarray, suffix: np.ndarray,
) -> dict[str, Any]:
    """Trie, prefix chains, merge tree and pair hash for :func:`_encode_reads`."""
    k = len(ALPHABET)
    children = [[-1] * k]
    node_tok = [-1]
    tok_node = []
    for t, s in enumerate(strings):
        node = 0
        for ch in s.encode():
            c = ALPHABET.index(ch)
            if children[node][c] < 0:
                children[node][c] = len(children)
                children.append([-1] * k)
                node_tok.append(-1)
            node = children[node][c]
        node_tok[node] = t
        tok_node.append(node)
    # next_prefix[t]: the longest token that is a proper prefix of t (-1 if none).
    next_prefix = []
    for s in strings:
        best, node = -1, 0
        for ch in s.encode()[:-1]:
            node = children[node][ALPHABET.index(ch)]
            if node_tok[node] >= 0:
                best = node_tok[node]
        next_prefix.append(best)
    if len(strings) <= DENSE_MAX_TOKENS:  # a dense pair table: ~30% faster than the hash
        t = len(strings)
        hkeys = np.array([t], dtype=np.int64)
        hvals = np.full(t * t, -1, dtype=np.int16)
        for (a, b), z in pairs.items():
            hvals[a * t + b] = z
        # Every pair's compatibility, decided once (~15 ms for METAGENE-1's 996 tokens, ~0.45
        # core-seconds for DNABERT-2's 4,091): the encoder then looks it up instead of walking
        # two merge trees per candidate token (with the dense pair table, DNABERT-2 encodes
        # 2.0x faster than with the hash and lazy decisions).
        compat = np.empty(t * t, dtype=np.uint8)
        lefts, rights = np.asarray(left, dtype=np.int32), np.asarray(right, dtype=np.int32)
        _compatible_rows(0, 0, t, lefts, rights, hkeys, hvals, compat)  # loaded once, before the parts
        with claim(budget()) as cores:  # rows of the table are independent: split over idle cores
            run_parts(lambda x0, x1: _compatible_rows(x0, x1, t, lefts, rights, hkeys, hvals, compat), t, cores)
        return _pack(strings, left, right, children, node_tok, next_prefix, hkeys, hvals, compat, vocab, code, unk_id,
                     prefix, suffix)
    size = 1 << max(4, (2 * len(pairs)).bit_length())
    hkeys = np.full(size, -1, dtype=np.int64)
    hvals = np.full(size, -1, dtype=np.int32)
    for (a, b), z in pairs.items():
        key = a * 65536 + b
        h = _hash(key, size - 1)
        while hkeys[h] >= 0:
            h = (h + 1) & (size - 1)
        hkeys[h] = key
        hvals[h] = z
    compat = np.empty(0, dtype=np.uint8)
    return _pack(strings, left, right, children, node_tok, next_prefix, hkeys, hvals, compat, vocab, code, unk_id,
                 prefix, suffix)


def _pack(strings, left, right, children, node_tok, next_prefix, hkeys, hvals, compat, vocab, code, unk_id, prefix,
          suffix):
    return {
        "compat": compat,  # (T * T,) uint8 pair verdicts, or empty: decide each pair with _compatible
        "code": code,
        "children": np.asarray(children, dtype=np.int32).ravel(),  # node * 5 + base
        "node_tok": np.asarray(node_tok, dtype=np.int32),
        "tok_len": np.asarray([len(s) for s in strings], dtype=np.int32),
        "next_prefix": np.asarray(next_prefix, dtype=np.int32),
        "left": np.asarray(left, dtype=np.int32),
        "right": np.asarray(right, dtype=np.int32),
        "hkeys": hkeys,
        "hvals": hvals,
        "out_id": np.asarray([vocab[s] for s in strings], dtype=np.int32),
        "unk_id": -1 if unk_id is None else int(unk_id),
        "prefix": prefix,
        "suffix": suffix,
    }


def _hash(key: int, mask: int) -> int:
    return ((key * 0x9E3779B1) >> 7) & mask


# ----------------------------------------------------------------------------- numba kernels


def _jit(fn):
    return numba.njit(cache=True, nogil=True, error_model="numpy")(fn) if numba is not None else fn


def _jit_inline(fn):
    return numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")(fn) if numba is not None else fn


@_jit_inline
def _merged(hkeys, hvals, a, b):
    """The token merged from ``(a, b)``, or -1.

    With ``hkeys == [T]``, ``hvals`` is a dense ``T x T`` int16 table; otherwise
    ``hkeys``/``hvals`` are an open-addressing hash of ``a * 65536 + b``.
    """
    if hkeys.shape[0] == 1:
        return hvals[a * hkeys[0] + b]
    mask = hkeys.shape[0] - 1
    key = a * 65536 + b
    h = ((key * 0x9E3779B1) >> 7) & mask
    while True:
        k = hkeys[h]
        if k == key:
            return hvals[h]
        if k < 0:
            return -1
        h = (h + 1) & mask


@_jit_inline
def _compatible(x, y, left, right, hkeys, hvals):
    """Does BPE keep ``x y`` as two tokens? (Token ids grow with merge rank.)"""
    limit = 1 << 30  # a merge across the split point below this rank would have fired
    while True:
        z = _merged(hkeys, hvals, x, y)
        if z >= 0 and z < limit:
            return False
        if x > y and left[x] != x:  # x was merged last: undo it; on a tie x's merge wins
            limit = x
            x = right[x]
        elif left[y] != y:  # undo y's merge; on a tie the pair to its left wins
            limit = y + 1
            y = left[y]
        else:
            return True


@_jit
def _compatible_call(x, y, left, right, hkeys, hvals):
    """:func:`_compatible` as a call, not inlined: keeps the encoder's hot loop small."""
    return _compatible(x, y, left, right, hkeys, hvals)


@_jit
def _compatible_rows(x0, x1, t, left, right, hkeys, hvals, out):
    """:func:`_compatible` of every pair ``(x, y)`` with ``x0 <= x < x1``, into ``out[x * t + y]``."""
    for x in range(x0, x1):
        for y in range(t):
            out[x * t + y] = 1 if _compatible(x, y, left, right, hkeys, hvals) else 0


@_jit
def _encode_word(seq, start, end, code, children, node_tok, tok_len, next_prefix, left, right,
                 hkeys, hvals, compat, stack, reach):
    """Tokens of ``seq[start:end]`` (no unknown bases) into ``stack``; returns their count."""
    n = end - start
    nt = left.shape[0]
    table = compat.shape[0] > 0  # pair verdicts precomputed (see _tables)
    for i in range(n + 1):
        reach[i] = 1
    top = 0
    pos = 0
    tok = _longest(seq, start, end, code, children, node_tok)
    while pos < n:
        last = stack[top - 1] if top > 0 else -1
        while True:
            stop = pos + tok_len[tok]
            if reach[stop] and (
                last < 0
                or (compat[last * nt + tok] != 0 if table else _compatible_call(last, tok, left, right, hkeys, hvals))
            ):
                stack[top] = tok
                top += 1
                pos = stop
                if pos < n:
                    tok = _longest(seq, start + pos, end, code, children, node_tok)
                break
            shorter = next_prefix[tok]
            if shorter >= 0:
                tok = shorter
            else:  # dead end: no token fits here; never come back to this position
                reach[pos] = 0
                top -= 1
                pos -= tok_len[last]
                tok = last
                break
    return top


@_jit_inline
def _longest(seq, start, end, code, children, node_tok):
    """The longest token that ``seq[start:end]`` starts with (every base is a token)."""
    node = 0
    best = -1
    for i in range(start, end):
        node = children[node * 5 + code[seq[i]]]
        if node < 0:
            break
        if node_tok[node] >= 0:
            best = node_tok[node]
    return best


@_jit
def _encode_reads(seq, offsets, code, children, node_tok, tok_len, next_prefix, left, right,
                  hkeys, hvals, compat, out_id, unk_id, prefix, suffix, tail_id, out, counts, handled):
    n = offsets.shape[0] - 1
    width = out.shape[1]
    longest = 0
    for i in range(n):
        longest = max(longest, offsets[i + 1] - offsets[i])
    stack = np.empty(longest + 1, dtype=np.int32)
    reach = np.empty(longest + 2, dtype=np.uint8)
    row = np.empty(longest + prefix.shape[0] + suffix.shape[0] + 1, dtype=np.int32)
    for i in range(n):
        a = offsets[i]
        b = offsets[i + 1]
        ok = True
        for p in range(a, b):
            if code[seq[p]] == -1:
                ok = False
                break
        if not ok:
            handled[i] = False
            continue
        k = 0
        for j in range(prefix.shape[0]):
            row[k] = prefix[j]
            k += 1
        p = a
        while p < b:
            if code[seq[p]] == -2:  # unknown base: its own [UNK], a barrier to merges
                row[k] = unk_id
                k += 1
                p += 1
                continue
            q = p
            while q < b and code[seq[q]] != -2:
                q += 1
            m = _encode_word(seq, p, q, code, children, node_tok, tok_len, next_prefix, left, right,
                             hkeys, hvals, compat, stack, reach)
            for j in range(m):
                row[k] = out_id[stack[j]]
                k += 1
            p = q
        for j in range(suffix.shape[0]):
            row[k] = suffix[j]
            k += 1
        counts[i] = k
        for j in range(min(k, width)):
            out[i, j] = row[j]
        if k > width and tail_id >= 0:
            out[i, width - 1] = tail_id
