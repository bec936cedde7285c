"""NCBI taxonomy (``nodes.dmp``, ``names.dmp``, optional ``merged.dmp``): lineages and
per-rank agreement of calls.

Only the few tax ids a run knows are walked up the tree (once each); per-read work is
array gathers over those lineages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RANKS", "TaxonomyError", "Taxonomy", "load_taxonomy", "rank_agreement"]

# species up to superkingdom; NCBI renamed superkingdom to "domain" (cellular life) and
# "acellular root" (viruses) in 2025, so both count as the top rank
RANKS = ("species", "genus", "family", "order", "class", "phylum", "superkingdom")
_RANK_ALIASES = {"domain": "superkingdom", "acellular root": "superkingdom"}


class TaxonomyError(ValueError):
    """A taxonomy directory that cannot be read (missing file, malformed line)."""


@dataclass
class Taxonomy:
    """Parent, rank and scientific name of every node; ``merged`` maps old ids to new ones."""

    parent: dict[int, int]
    rank: dict[int, str]
    names: dict[int, str] = field(default_factory=dict)
    merged: dict[int, int] = field(default_factory=dict)
    source: str = ""

    def resolve(self, tax_id: int) -> int:
        """The current id of ``tax_id`` (through merged.dmp); -1 if unknown."""
        t = self.merged.get(tax_id, tax_id)
        return t if t in self.parent else -1

    def lineage(self, tax_id: int, ranks: tuple[str, ...] = RANKS) -> list[int]:
        """The ancestor (or the node itself) at each of ``ranks``; -1 where the lineage has none."""
        found = dict.fromkeys(ranks, -1)
        t = self.resolve(int(tax_id))
        seen = 0
        while t != -1 and seen < 256:  # the root is its own parent; 256 guards a looped file
            r = _RANK_ALIASES.get(self.rank.get(t, ""), self.rank.get(t, ""))
            if r in found and found[r] == -1:
                found[r] = t
            p = self.parent.get(t, -1)
            t = -1 if p == t else p
            seen += 1
        return [found[r] for r in ranks]

    def name(self, tax_id: int) -> str:
        """Scientific name, or the id as text."""
        return self.names.get(int(tax_id), str(tax_id))


def _rows(path: Path, min_fields: int) -> list[list[str]]:
    """Fields of a ``.dmp`` file (``\\t|\\t``-separated, lines ending ``\\t|``)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TaxonomyError(f"{path}: cannot read ({exc.strerror or exc}); --taxonomy DIR needs nodes.dmp and "
                            "names.dmp from NCBI's taxdump.tar.gz") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        f = line.rstrip("\t|").split("\t|\t")
        if len(f) < min_fields:
            raise TaxonomyError(f"{path}, line {lineno}: expected at least {min_fields} '\\t|\\t'-separated "
                                f"fields, found {len(f)}; is this an NCBI .dmp file?")
        rows.append(f)
    return rows


def load_taxonomy(directory: str | Path) -> Taxonomy:
    """Read ``DIR/nodes.dmp`` and ``DIR/names.dmp`` (and ``DIR/merged.dmp`` if present).

    Raises:
        TaxonomyError: a file is missing or a line does not parse.
    """
    d = Path(directory)
    parent: dict[int, int] = {}
    rank: dict[int, str] = {}
    names: dict[int, str] = {}
    merged: dict[int, int] = {}
    try:
        for f in _rows(d / "nodes.dmp", 3):
            t = int(f[0])
            parent[t] = int(f[1])
            rank[t] = f[2].strip()
        for f in _rows(d / "names.dmp", 4):
            if f[3].strip() == "scientific name":
                names[int(f[0])] = f[1]
        if (d / "merged.dmp").is_file():
            for f in _rows(d / "merged.dmp", 2):
                merged[int(f[0])] = int(f[1])
    except ValueError as exc:
        if isinstance(exc, TaxonomyError):
            raise
        raise TaxonomyError(f"{d}: a tax id is not an integer ({exc})") from None
    return Taxonomy(parent=parent, rank=rank, names=names, merged=merged, source=str(d))


def rank_agreement(true_tax: np.ndarray, pred_tax: np.ndarray, tax: Taxonomy,
                   ranks: tuple[str, ...] = RANKS) -> dict[str, Any]:
    """Accuracy at each rank, and for each wrong call the lowest rank at which it agrees.

    A read counts at a rank when its true lineage has a node there; it is right at that rank
    when the call's lineage has the same node. A call is *wrong* when the two tax ids differ;
    its first agreeing rank is the lowest rank where both lineages share a node ("none"
    when they share none of ``ranks``). Reads whose true tax id is not in the taxonomy
    count nowhere but in ``reads_without_lineage``.

    Returns:
        ``{"ranks", "accuracy": {rank: float|None}, "reads": {rank: int}, "correct": {rank: int},
        "wrong_calls": int, "first_agreement": {rank or "none": int}, "reads_without_lineage": int,
        "unknown_tax_ids": [..]}``.
    """
    t = np.asarray(true_tax, dtype=np.int64)
    p = np.asarray(pred_tax, dtype=np.int64)
    uniq, inv = np.unique(np.concatenate([t, p]), return_inverse=True)
    lin = np.array([tax.lineage(int(u), ranks) if u >= 0 else [-1] * len(ranks) for u in uniq],
                   dtype=np.int64).reshape(len(uniq), len(ranks))
    unknown = [int(u) for u in uniq if u >= 0 and tax.resolve(int(u)) == -1]
    lt, lp = lin[inv[: len(t)]], lin[inv[len(t):]]
    present = lt >= 0
    agree = present & (lt == lp)
    reads = present.sum(axis=0)
    correct = agree.sum(axis=0)
    placed = present.any(axis=1)
    wrong = (t != p) & placed
    first = np.where(agree[wrong].any(axis=1), np.argmax(agree[wrong], axis=1), len(ranks))
    counts = np.bincount(first, minlength=len(ranks) + 1)
    return {
        "ranks": list(ranks),
        "accuracy": {r: (float(correct[i] / reads[i]) if reads[i] else None) for i, r in enumerate(ranks)},
        "reads": {r: int(reads[i]) for i, r in enumerate(ranks)},
        "correct": {r: int(correct[i]) for i, r in enumerate(ranks)},
        "wrong_calls": int(wrong.sum()),
        "first_agreement": {**{r: int(counts[i]) for i, r in enumerate(ranks)}, "none": int(counts[-1])},
        "reads_without_lineage": int((~placed).sum()),
        "unknown_tax_ids": unknown,
    }
