"""A dataset's manifest: the one builder, the reader and its validator, the compatibility check.

:func:`build_manifest` is the one function that assembles a manifest
(:func:`shards.writer.write_manifest` writes it, last). Readers call :func:`read_manifest`
(which runs :func:`validate_manifest`: shard names confined to the dataset directory,
integers in range, offsets aligned, non-overlapping and inside the shard's recorded size)
and :func:`check_compatible`; they fail with a :class:`shards.spec.FormatError` that names
the problem and says what to do. The fields are described in :mod:`shards.spec`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .spec import (
    DATASET_DTYPES,
    DATASET_ID_BYTES,
    FORMAT_NAME,
    FORMAT_VERSION,
    LAYOUTS,
    MANIFEST_NAME,
    MAX_LENGTH_LIMIT,
    OPTIONAL_VECTORS,
    REPAIR_ADVICE,
    FormatError,
    check_shard_file,
    first_line,
)

__all__ = ["build_manifest", "read_manifest", "validate_manifest", "describe_tokenizer", "check_compatible", "records_before"]

_MAX_COUNT = 1 << 48  # no count or byte size in a manifest is larger (a 256 TB shard)
_ITEMSIZE = {name: dtype.itemsize for name, dtype in DATASET_DTYPES.items()}


def build_manifest(
    *,
    tokenizer: Mapping[str, Any],
    max_length: int,
    layout: str,
    compression: str | None,
    num_classes: int,
    label_names: list[str],
    label_class_ids: list[int],
    label_tax_ids: list[int],
    shards: list[Mapping[str, Any]],
    source: Mapping[str, Any],
    dataset_id: str | None,
    num_tokens: int,
) -> dict[str, Any]:
    """The manifest body (the one place that assembles it; :func:`write_manifest` writes it).

    ``shards`` are ``{"file", **write_shard(...)}`` entries in shard order; totals are
    computed from them.
    """
    body: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tokenizer": dict(tokenizer),
        "max_length": int(max_length),
        "layout": layout,
        "compression": (compression or "gzip") if layout == "compressed" else "none",
        "num_classes": int(num_classes),
    }
    if dataset_id is not None:
        body["dataset_id"] = dataset_id
    body.update({
        "label_names": list(label_names),
        "label_class_ids": [int(c) for c in label_class_ids],
        "label_tax_ids": [int(t) for t in label_tax_ids],
        "shards": [dict(e) for e in shards],
        "totals": {
            "num_rows": int(sum(int(e["num_rows"]) for e in shards)),
            "num_shards": len(shards),
            "num_tokens": int(num_tokens),
        },
        "source": dict(source),
    })
    return body


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a dataset's manifest (see :func:`validate_manifest`).

    Raises:
        FormatError: no manifest (incomplete or not a dataset), another format version, or
            a malformed manifest (the message names the field).
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise FormatError(
            f"{directory}: no {MANIFEST_NAME}; this is not a complete readshard dataset. "
            "Convert it with `python -m convert INPUT --out DIR` (or finish an interrupted "
            "conversion with `--resume`)."
        )
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError, RecursionError) as exc:
        raise FormatError(f"{path}: unreadable manifest ({first_line(exc)}); {REPAIR_ADVICE}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: not a readshard manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{directory}: dataset format version {version!r}, this readshard reads version "
            f"{FORMAT_VERSION}. Re-convert the source with this version "
            "(`python -m convert INPUT --out NEW_DIR`) or install the readshard release that wrote it."
        )
    validate_manifest(manifest, where=str(path))
    return manifest


def _bad(where: str, what: str) -> FormatError:
    return FormatError(f"{where}: {what}; the manifest is corrupt or was edited: {REPAIR_ADVICE}")


def _int(value: Any, what: str, lo: int, hi: int, where: str) -> int:
    # bool is an int subclass; JSON floats such as 1e30 are refused too.
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(where, f"{what} is {value!r}, expected an integer in {lo}..{hi}")
    return value


def validate_manifest(manifest: Mapping[str, Any], where: str = "manifest") -> None:
    """Cheap structural checks of a manifest; no file is opened.

    Types and ranges of every field a reader uses; shard names confined to the dataset
    directory and unique; per shard, every offset inside the recorded size, the datasets
    non-overlapping and (for datasets that carry a ``dataset_id``) aligned to their item
    size; totals consistent. Linear in the shard count, independent of the read count.

    Raises:
        FormatError: naming the field (and shard) that is wrong.
    """
    L = _int(manifest.get("max_length"), "max_length", 1, MAX_LENGTH_LIMIT, where)
    C = _int(manifest.get("num_classes"), "num_classes", 0, (1 << 31) - 1, where)
    layout = manifest.get("layout")
    if layout not in LAYOUTS:
        raise _bad(where, f"unknown layout {layout!r} (expected {' or '.join(LAYOUTS)})")
    tok = manifest.get("tokenizer")
    if not isinstance(tok, dict):
        raise _bad(where, "tokenizer is not an object")
    vocab = _int(tok.get("vocab_size"), "tokenizer.vocab_size", 1, 1 << 15, where)
    _int(tok.get("pad_id"), "tokenizer.pad_id", 0, vocab - 1, where)
    for key in ("label_names", "label_class_ids", "label_tax_ids"):
        value = manifest.get(key)
        if not isinstance(value, list) or len(value) != C:
            raise _bad(where, f"{key} must be a list of num_classes={C} entries")
    if not all(isinstance(x, str) for x in manifest["label_names"]):
        raise _bad(where, "label_names must be strings")
    ident = manifest.get("dataset_id")
    if ident is not None and not (isinstance(ident, str) and re.fullmatch(r"[0-9a-f]{32}", ident)):
        raise _bad(where, f"dataset_id {ident!r} is not 32 hex digits")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise _bad(where, "shards is not a list")
    seen: set[str] = set()
    total = 0
    for k, entry in enumerate(shards):
        here = f"{where}: shards[{k}]"
        if not isinstance(entry, dict):
            raise _bad(here, "entry is not an object")
        name = check_shard_file(entry.get("file"), here)
        if name in seen:
            raise _bad(here, f"shard file {name!r} listed twice")
        seen.add(name)
        total += _check_entry(entry, here, L, C, layout, aligned=ident is not None)
    totals = manifest.get("totals")
    if not isinstance(totals, dict):
        raise _bad(where, "totals is not an object")
    if _int(totals.get("num_rows"), "totals.num_rows", 0, _MAX_COUNT, where) != total:
        raise _bad(where, f"totals say {totals['num_rows']} reads but its shards hold {total}: inconsistent")


_HEX64 = re.compile(r"[0-9a-f]{64}")
_MISSING = object()


def _check_entry(entry: Mapping[str, Any], where: str, L: int, C: int, layout: str, *, aligned: bool) -> int:
    """Check one shard entry; return its row count. Runs per shard at open: kept lean."""
    n = entry.get("num_rows")
    if type(n) is not int or not 0 <= n <= _MAX_COUNT:
        _int(n, "num_rows", 0, _MAX_COUNT, where)
    size = entry.get("bytes")
    if type(size) is not int or not 0 <= size <= _MAX_COUNT:
        _int(size, "bytes", 0, _MAX_COUNT, where)
    sha = entry.get("sha256")
    if sha is not None and not (type(sha) is str and _HEX64.fullmatch(sha)):
        raise _bad(where, f"sha256 {sha!r} is not 64 hex digits")
    offsets = entry.get("offsets")
    if type(offsets) is not dict:
        raise _bad(where, "offsets is not an object")
    if not offsets.keys() <= DATASET_DTYPES.keys():
        unknown = sorted(map(str, set(offsets) - set(DATASET_DTYPES)))
        raise _bad(where, f"unknown datasets in offsets: {', '.join(unknown)}")
    counts = {"input_ids": n * L, "class_offsets": C + 1, "dataset_id": DATASET_ID_BYTES}
    spans = []
    for name, item in _ITEMSIZE.items():
        off = offsets.get(name, _MISSING)
        nbytes = item * counts.get(name, n)
        if off is None:
            if nbytes and not (name == "input_ids" and layout == "compressed"):
                raise _bad(where, f"dataset {name} has no offset but holds {nbytes} bytes")
            continue
        if off is _MISSING:
            if (name == "dataset_id" and not aligned) or name in OPTIONAL_VECTORS:
                continue
            raise _bad(where, f"offsets has no entry for {name}")
        if type(off) is not int or not 0 <= off <= size:
            _int(off, f"offset of {name}", 0, size, where)
        if aligned and off % item:
            raise _bad(where, f"offset {off} of {name} is not aligned to its {item}-byte items")
        if off + nbytes > size:
            raise _bad(where, f"dataset {name} ({off}+{nbytes} bytes) runs past the shard's {size} bytes")
        if nbytes:
            spans.append((off, off + nbytes, name))
    if layout == "compressed" and n and offsets.get("input_ids") is not None:
        raise _bad(where, "input_ids has an offset in a compressed-layout dataset")
    spans.sort()
    for k in range(1, len(spans)):
        if spans[k][0] < spans[k - 1][1]:
            (a0, a1, an), (b0, _, bn) = spans[k - 1], spans[k]
            raise _bad(where, f"datasets {an} ({a0}..{a1}) and {bn} (from {b0}) overlap")
    return n


def describe_tokenizer(info: Mapping[str, Any]) -> str:
    """``'metagene-1' (sha256 d57ebd866290)``; parts that are missing are left out, never ``None``."""
    name = info.get("name")
    sha = info.get("sha256")
    text = repr(str(name)) if name else "a tokenizer"
    return f"{text} (sha256 {str(sha)[:12]})" if sha else text


def check_compatible(
    manifest: Mapping[str, Any],
    *,
    tokenizer: Mapping[str, Any] | None = None,
    max_length: int | None = None,
    where: str = "dataset",
) -> None:
    """Refuse a dataset whose tokenizer or max length differ from what the caller expects.

    Args:
        manifest: from :func:`read_manifest`.
        tokenizer: expected identity: its ``sha256`` is compared when given, else its ``name``.
        max_length: expected L, if any.
        where: how to name the dataset in the message.

    Raises:
        FormatError: with what differs and what to do.
    """
    have = manifest["tokenizer"]
    if tokenizer is not None:
        # Identity is the content (sha256); the name only where no sha256 is given.
        key = "sha256" if tokenizer.get("sha256") else "name"
        if key in tokenizer and tokenizer[key] != have.get(key):
            raise FormatError(
                f"{where}: tokenized with {describe_tokenizer(have)}, but {describe_tokenizer(tokenizer)} "
                "is expected. Re-convert with the expected tokenizer (`python -m convert INPUT --tokenizer SPEC`) "
                "or change the config's tokenizer to match the data."
            )
    if max_length is not None and int(manifest["max_length"]) != int(max_length):
        raise FormatError(
            f"{where}: max_length {manifest['max_length']}, expected {max_length}; "
            "re-convert with --max-length or change the config"
        )


def records_before(manifest: Mapping[str, Any]) -> np.ndarray:
    """(S,) int64: for each shard, the record count of the inputs before its input.

    Adding it to a shard's ``record_numbers`` gives global record numbers.
    """
    per_input = np.asarray(manifest.get("source", {}).get("records_per_input", []), dtype=np.int64)
    base = np.zeros(per_input.size + 1, dtype=np.int64)
    np.cumsum(per_input, out=base[1:])
    inputs = np.asarray([int(e.get("input", 0)) for e in manifest["shards"]], dtype=np.int64)
    if inputs.size and inputs.max() >= base.size:
        return np.zeros(inputs.size, dtype=np.int64)
    return base[inputs] if inputs.size else np.zeros(0, dtype=np.int64)
