"""``--resume`` on a complete dataset: check it, and re-convert only the shards that are damaged.

``python -m convert INPUT... --out DIR --resume`` where ``DIR`` is a published dataset:

* every shard listed in the manifest is checked (present, size and sha256 as recorded);
  when all are intact the command exits 0 saying ``already complete``;
* a missing, truncated or modified shard is re-converted from its unit of the inputs.
  Units depend only on the inputs and ``reads_per_shard``, and conversion is a pure
  function of a unit and the settings, so the new shard must hash exactly as the manifest
  says; it then replaces the damaged file (write to a temporary name, fsync, rename).
  A different hash means the inputs or settings differ from those that made ``DIR``:
  nothing is replaced and the error says so.

The settings come from the manifest (tokenizer, max length, layout, compression, header
regex, reads per shard, labels), so the plain command above is enough; options given on
the command line must agree with the manifest. Only registry tokenizers can be reloaded by
name; a dataset made with a tokenizer file needs ``--tokenizer PATH`` again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from . import format as fmt
from .fastx import iter_units
from .labels import LabelMap, read_mapping
from .pipeline import ConvertError, ConvertOptions, Settings, convert_unit, lock_staging, staging_dir
from .tokenizers import REGISTRY, load_tokenizer

__all__ = ["damaged_shards", "resume_complete"]


def damaged_shards(directory: Path, manifest: dict[str, Any]) -> list[int]:
    """Indices of the manifest's shards that are missing or whose size or sha256 differ."""
    bad = []
    for i, entry in enumerate(manifest["shards"]):
        path = directory / entry["file"]
        if (not path.is_file() or path.is_symlink() or path.stat().st_size != int(entry["bytes"])
                or fmt.file_sha256(path) != entry["sha256"]):
            bad.append(i)
    return bad


def _settings(opts: ConvertOptions, manifest: dict[str, Any], staging: Path) -> Settings:
    """The conversion settings of ``manifest``; a ConvertError where ``opts`` contradicts it."""
    defaults = ConvertOptions(inputs=[], out="")
    src = manifest.get("source", {})
    want = {
        "header_regex": src.get("header_regex"),
        "reads_per_shard": src.get("reads_per_shard"),
        "layout": manifest["layout"],
        "max_length": manifest["max_length"],
    }
    if manifest["layout"] == "compressed":
        want["compression"] = manifest["compression"]
    differ = [f"--{k.replace('_', '-')} {getattr(opts, k)!r} (the dataset has {v!r})" for k, v in want.items()
              if getattr(opts, k) != getattr(defaults, k) and str(getattr(opts, k)) != str(v)]
    names = [os.path.basename(p) for p in opts.inputs]
    if names != list(src.get("inputs", [])):
        differ.append(f"inputs {names} (the dataset was made from {src.get('inputs')})")
    if opts.mapping is not None and read_mapping(opts.mapping).sha256 != src.get("mapping_sha256"):
        differ.append(f"--mapping {opts.mapping} (not the mapping the dataset was made with)")
    have_tok = manifest["tokenizer"]
    spec = opts.tokenizer if opts.tokenizer != defaults.tokenizer else have_tok.get("name")
    if spec not in REGISTRY and not Path(str(spec)).exists():
        raise ConvertError(
            f"{staging.parent}: the dataset was tokenized with a tokenizer file ({have_tok.get('file', spec)}); "
            "repeat its --tokenizer PATH with --resume"
        )
    tok = load_tokenizer(str(spec))
    if tok.info != have_tok:
        differ.append(f"--tokenizer {spec} ({fmt.describe_tokenizer(tok.info)}, the dataset has "
                      f"{fmt.describe_tokenizer(have_tok)})")
    if differ:
        raise ConvertError(
            "--resume on a complete dataset re-converts damaged shards with the settings it was made with, "
            f"but {'; '.join(differ)}. Rerun with the dataset's own inputs and settings, or replace the "
            "dataset with --overwrite."
        )
    lm = LabelMap(list(manifest["label_class_ids"]), list(manifest["label_names"]), list(manifest["label_tax_ids"]),
                  sha256=str(src.get("mapping_sha256")))
    return Settings(
        tokenizer=str(spec),
        max_length=int(manifest["max_length"]),
        header_regex=str(src.get("header_regex")),
        label_map=lm,
        layout=manifest["layout"],
        compression=manifest["compression"] if manifest["layout"] == "compressed" else defaults.compression,
        on_bad_record="skip",
        staging=str(staging),
        tokenizer_info=tok.info,
        parent_pid=os.getpid(),
        dataset_id=manifest.get("dataset_id"),
        max_record_bytes=opts.max_record_bytes,
        split=src.get("split"),  # a --split side keeps only its rows
        strand_hashes=all("strand_hashes" in e["offsets"] for e in manifest["shards"]),  # as the dataset has it
    )


def resume_complete(opts: ConvertOptions, out: Path) -> dict[str, Any]:
    """Check a published dataset and re-convert its damaged shards; return its report + ``resume``.

    Raises:
        ConvertError: settings that contradict the dataset, or a re-converted shard whose hash
            differs from the manifest (the inputs changed).
        FormatError: an unreadable manifest.
    """
    manifest = fmt.read_manifest(out)
    report = _report(out)
    bad = damaged_shards(out, manifest)
    if not bad:
        report["resume"] = f"already complete: {len(manifest['shards'])} shards verified (size and sha256)"
        return report
    staging = staging_dir(out)
    os.mkdir(staging)  # absent (checked by the caller); fails on anything already there, link or not
    lock_fd = lock_staging(staging)
    try:
        (staging / ".units").mkdir()
        settings = _settings(opts, manifest, staging)
        todo = set(bad)
        index = 0
        for fi, path in enumerate(opts.inputs):
            for unit in iter_units(path, fi, settings_reads(manifest), max_record_bytes=opts.max_record_bytes):
                if index in todo:
                    _repair_one(unit, index, settings, manifest, staging, out)
                    todo.discard(index)
                index += 1
                if not todo:
                    break
            if not todo:
                break
        if todo:
            raise ConvertError(
                f"the inputs hold fewer units than {out} has shards; they are not the inputs it was made from"
            )
    finally:
        os.close(lock_fd)
        shutil.rmtree(staging, ignore_errors=True)  # created above, holds only this run's files
    report["resume"] = f"repaired {len(bad)} of {len(manifest['shards'])} shards: " + ", ".join(
        manifest["shards"][i]["file"] for i in bad
    )
    return report


def settings_reads(manifest: dict[str, Any]) -> int:
    """The dataset's records per unit (= per shard)."""
    return int(manifest["source"]["reads_per_shard"])


def _repair_one(unit: Any, index: int, settings: Settings, manifest: dict[str, Any], staging: Path, out: Path) -> None:
    entry = manifest["shards"][index]
    record = convert_unit(unit, index, settings)
    if record["shard"]["sha256"] != entry["sha256"] or record["shard"]["bytes"] != entry["bytes"]:
        raise ConvertError(
            f"re-converting {entry['file']} from {unit.file} gave a different shard than the manifest records: "
            "the inputs or settings are not the ones that made the dataset. Nothing was replaced; re-convert "
            "the whole dataset with --overwrite."
        )
    target = out / entry["file"]
    tmp = out / f".{entry['file']}.repair.tmp"
    os.replace(staging / entry["file"], tmp)  # same filesystem: staging sits beside out
    os.replace(tmp, target)  # replaces a symlink itself, never its target


def _report(out: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((out / fmt.REPORT_NAME).read_text())
    except (OSError, ValueError):
        return {}
