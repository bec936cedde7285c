"""Fail fast and loud when most records would be skipped.

Two checks, both driven by ``--min-written-fraction F`` (default 0.5; 0 disables them):

* **Before any work** (:func:`probe`): the first :data:`PROBE_RECORDS` records of every input
  are classified exactly as the workers will; if fewer than ``F`` of them would be written
  the run stops within seconds (exit 2), naming the top skip reason and one offending
  header beside the header regex or the mapping.
* **At the end** (:func:`check_written_fraction`): if fewer than ``F`` of all records were
  written, nothing is published; the finished shards stay in staging, so
  ``--resume --min-written-fraction 0`` publishes them without converting again.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from .fastx import ParsedRecord, iter_units, parse_unit

__all__ = [
    "PROBE_RECORDS",
    "DEFAULT_MIN_WRITTEN_FRACTION",
    "TooManySkipped",
    "Probe",
    "probe",
    "check_probe",
    "check_written_fraction",
]

PROBE_RECORDS = 10_000
DEFAULT_MIN_WRITTEN_FRACTION = 0.5


class TooManySkipped(Exception):
    """Fewer records than ``--min-written-fraction`` would be (or were) written."""


@dataclass
class Probe:
    """What the first records of one input would give."""

    path: str
    records: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # reason -> (line, header)

    @property
    def written(self) -> int:
        """Records of the probe that would be written."""
        return self.records - sum(self.skipped.values())


def probe(
    paths: Sequence[str], classify: Callable[[ParsedRecord], str | None], limit: int = PROBE_RECORDS,
    max_record_bytes: int | None = None,
) -> list[Probe]:
    """Classify the first ``limit`` records of each input (``classify`` returns a skip reason or None)."""
    out = []
    for i, path in enumerate(paths):
        p = Probe(str(path))
        for unit in iter_units(path, i, limit, max_record_bytes=max_record_bytes):
            for rec in parse_unit(unit):
                p.records += 1
                reason = classify(rec)
                if reason is not None:
                    p.skipped[reason] += 1
                    p.examples.setdefault(reason, (rec.line, rec.header))
            break  # the first unit holds the first `limit` records
        out.append(p)
    return out


def _advice(reason: str, header_regex: str, mapping: str | None, class_ids: Sequence[int]) -> str:
    if reason == "header_mismatch":
        return (f"the header does not match --header-regex {header_regex!r}; pass a --header-regex "
                "with a (?P<class_id>...) group that matches these headers")
    if reason == "unknown_class":
        shown = ", ".join(map(str, list(class_ids)[:10])) + (" ..." if len(class_ids) > 10 else "")
        return (f"its class id is not in the mapping {mapping} ({len(class_ids)} classes: {shown}); "
                "add the missing classes to the mapping TSV")
    return "the record itself is unusable; fix the input"


def check_probe(
    probes: Sequence[Probe], min_fraction: float, header_regex: str, mapping: str | None, class_ids: Sequence[int]
) -> None:
    """Raise :class:`TooManySkipped` if any input's probe writes fewer than ``min_fraction``."""
    if min_fraction <= 0:
        return
    for p in probes:
        if p.records == 0 or p.written / p.records >= min_fraction:
            continue
        reason, count = p.skipped.most_common(1)[0]
        line, header = p.examples[reason]
        reasons = ", ".join(f"{k} {v:,}" for k, v in p.skipped.most_common())
        raise TooManySkipped(
            f"{p.path}: {p.records - p.written:,} of the first {p.records:,} records would be skipped "
            f"({reasons}); only {p.written / p.records:.0%} would be written, below "
            f"--min-written-fraction {min_fraction:g}. Stopped before converting anything. "
            f"Top reason {reason}: line {line}, header {header[:100].decode('ascii', 'replace')!r}: "
            f"{_advice(reason, header_regex, mapping, class_ids)}. "
            "If this is expected, rerun with --min-written-fraction 0."
        )


def check_written_fraction(
    records_in: int, written: int, skipped: Mapping[str, int], min_fraction: float, out: str | os.PathLike[str]
) -> None:
    """Raise :class:`TooManySkipped` if fewer than ``min_fraction`` of all records were written."""
    if min_fraction <= 0 or records_in == 0 or written / records_in >= min_fraction:
        return
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items(), key=lambda kv: -kv[1]) if v)
    raise TooManySkipped(
        f"only {written:,} of {records_in:,} records were written ({written / records_in:.1%}; skipped: {reasons}), "
        f"below --min-written-fraction {min_fraction:g}; nothing was published at {out}. Check the header "
        "regex and the mapping; to publish these shards as they are, rerun the same command with "
        "--resume --min-written-fraction 0 (nothing is converted again)."
    )
