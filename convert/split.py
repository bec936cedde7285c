"""``--split val=F[,test=G] --seed S``: one input -> ``DIR/train``, ``DIR/val`` (``DIR/test``).

Each row's side is a function of its fragment hash and the seed only
(:func:`convert.provenance.assign_split`), so both mates of a pair always land on the same
side and the split is identical for any ``--jobs`` or ``--reads-per-shard``. Each side is
a complete dataset of its own, converted and published atomically like any other (its
manifest records ``source.split``); the converter runs once per side, tokenizing only that
side's reads (the scan and parse are repeated, tokenization is not). Skipped records belong
to no side: each side's report and quarantine list all of them, and its report reconciles
as records in = written + skipped + ``other_split``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .pipeline import ConvertError, ConvertOptions, convert
from .provenance import SPLIT_SIDES

__all__ = ["parse_split", "convert_split"]


def parse_split(text: str) -> dict[str, float]:
    """``"val=0.1,test=0.05"`` -> ``{"val": 0.1, "test": 0.05}``; a ConvertError if malformed."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, sep, value = part.partition("=")
        try:
            frac = float(value)
        except ValueError:
            frac = -1.0
        if not sep or key not in ("val", "test") or key in out or not 0 < frac < 1:
            raise ConvertError(
                f"--split {text!r}: expected val=F or val=F,test=G with fractions between 0 and 1 "
                "(e.g. --split val=0.1,test=0.1)"
            )
        out[key] = frac
    if "val" not in out:
        raise ConvertError(f"--split {text!r}: a val fraction is required (e.g. --split val=0.1)")
    if sum(out.values()) >= 1:
        raise ConvertError(f"--split {text!r}: val + test must leave something for train (sum below 1)")
    return out


def convert_split(opts: ConvertOptions, fractions: dict[str, float], seed: int) -> dict[str, dict[str, Any]]:
    """Convert ``opts.inputs`` into ``opts.out/<side>`` for every side; return each side's report."""
    sides = [s for s in SPLIT_SIDES if s == "train" or s in fractions]
    reports = {}
    for side in sides:
        split = {"side": side, "fractions": dict(sorted(fractions.items())), "seed": int(seed)}
        reports[side] = convert(dataclasses.replace(opts, out=str(Path(opts.out) / side), split=split))
    return reports
