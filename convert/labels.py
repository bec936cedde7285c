"""Labels from read headers: the header regex and the class mapping TSV."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "DEFAULT_HEADER_REGEX",
    "MappingError",
    "LabelMap",
    "compile_header_regex",
    "display_names",
    "read_mapping",
]

DEFAULT_HEADER_REGEX = (
    r"^lbl\|(?P<class_id>\d+)\|(?P<tax_id>\d+)?\|(?P<readlen>\d+)?\|(?P<name>[^/\s]+)(?:/(?P<mate>\d+))?$"
)


_INT32_MAX = 2**31 - 1
# Class ids below this are looked up in tables indexed by id (this module's labels, and
# convert.fastparse's known ids); larger ones are searched. At most 4 MB of int32.
DENSE_CLASS_IDS = 1 << 20


class MappingError(Exception):
    """A mapping TSV or header regex that cannot be used."""


@dataclass
class LabelMap:
    """class_id -> contiguous label 0..C-1, with names and tax ids (C entries, small)."""

    class_ids: list[int]
    names: list[str]
    tax_ids: list[int]
    sha256: str
    label_of: dict[int, int] = field(init=False)
    _dense: np.ndarray = field(init=False, repr=False, compare=False)
    _display: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.label_of = {c: i for i, c in enumerate(self.class_ids)}
        self._display = display_names(self.names, self.class_ids)
        ids = np.asarray(self.class_ids, dtype=np.int64)
        small = (ids >= 0) & (ids < DENSE_CLASS_IDS)
        # class id -> label for the usual small ids: one gather per unit instead of a search
        self._dense = np.full(int(ids[small].max()) + 1 if small.any() else 0, -1, dtype=np.int32)
        self._dense[ids[small]] = np.flatnonzero(small).astype(np.int32)

    def labels_of(self, class_ids: np.ndarray) -> np.ndarray:
        """Labels (int32) of ``class_ids``, vectorized; -1 for an id not in the mapping."""
        cids = np.asarray(class_ids, dtype=np.int64)
        if cids.size == 0 or (cids.min() >= 0 and cids.max() < self._dense.size):
            return self._dense[cids]
        ids = np.asarray(self.class_ids, dtype=np.int64)
        if ids.size == 0:
            return np.full(cids.shape, -1, dtype=np.int32)
        order = np.argsort(ids, kind="stable")
        pos = np.minimum(np.searchsorted(ids[order], cids), ids.size - 1)
        return np.where(ids[order][pos] == cids, order[pos], -1).astype(np.int32)

    @property
    def num_classes(self) -> int:
        """C."""
        return len(self.class_ids)

    @property
    def display_names(self) -> list[str]:
        """Label names for reports, unique (:func:`display_names`)."""
        return self._display


def display_names(names: Sequence[str], class_ids: Sequence[int]) -> list[str]:
    """Names as reports key them: a name that several mapping rows share gets its class id,
    ``name (class 17)``, so per-class counts keyed by name never merge two labels."""
    shared = Counter(names)
    return [f"{n} (class {int(c)})" if shared[n] > 1 else n for n, c in zip(names, class_ids)]


def compile_header_regex(pattern: str) -> re.Pattern[bytes]:
    """Compile the header regex (matched against the record id as bytes).

    Raises:
        MappingError: invalid regex or no ``class_id`` group.
    """
    try:
        rx = re.compile(pattern.encode())
    except re.error as exc:
        raise MappingError(f"--header-regex {pattern!r} is not a valid regular expression: {exc}") from None
    if "class_id" not in rx.groupindex:
        raise MappingError(f"--header-regex {pattern!r} has no named group (?P<class_id>...)")
    return rx


def read_mapping(path: str | os.PathLike[str]) -> LabelMap:
    """Read a mapping TSV with columns ``class_id``, ``tax_id``, ``species`` (header line).

    Labels are assigned in increasing class_id order, so they do not depend on row order.

    Raises:
        MappingError: missing columns, a non-integer id, or a duplicated class_id; the message
            names the file and line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise MappingError(
            f"{path}, line {line}: not UTF-8 text (byte {data[exc.start]:#04x}); save the mapping as UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)"
        ) from None
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    if not rows:
        raise MappingError(f"{path}: empty mapping; expected a header line class_id<TAB>tax_id<TAB>species")
    header = [h.strip().lower() for h in rows[0]]
    if "class_id" not in header:
        raise MappingError(f"{path}, line 1: no class_id column (header: {rows[0]})")
    ci = header.index("class_id")
    ti = header.index("tax_id") if "tax_id" in header else None
    si = next((header.index(k) for k in ("species", "name", "label") if k in header), None)
    entries: dict[int, tuple[str, int]] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            cid = int(row[ci])
            tax = int(row[ti]) if ti is not None and ti < len(row) and row[ti].strip() else -1
        except (ValueError, IndexError):
            raise MappingError(f"{path}, line {lineno}: class_id and tax_id must be integers, got {row}") from None
        if not 0 <= cid <= _INT32_MAX or not (tax == -1 or 0 <= tax <= _INT32_MAX):
            raise MappingError(
                f"{path}, line {lineno}: class_id and tax_id must be between 0 and {_INT32_MAX} (they are stored "
                f"as int32; an empty tax_id means unknown), got {row}"
            )
        if cid in entries:
            raise MappingError(f"{path}, line {lineno}: class_id {cid} appears twice")
        name = row[si] if si is not None and si < len(row) else str(cid)
        entries[cid] = (name, tax)
    if not entries:
        raise MappingError(f"{path}: the mapping lists no classes")
    ids = sorted(entries)
    return LabelMap(
        class_ids=ids,
        names=[entries[c][0] for c in ids],
        tax_ids=[entries[c][1] for c in ids],
        sha256=hashlib.sha256(data).hexdigest(),
    )
