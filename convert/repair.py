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
regex, reads per shard, labels), so the plain command above is enough; the inputs (name,
size, first MiB) and every option given are compared with the manifest before anything
else, and a difference is an error naming each one and the ``--overwrite`` command. Only
registry tokenizers can be reloaded by name; a dataset made with a tokenizer file needs
``--tokenizer PATH`` again.

:func:`finish_publish` (run by every converter before it decides anything) finishes or
undoes a publish that was interrupted, and removes what it left only once ``--out`` is
checked complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shards as fmt
from .fastx import iter_units
from .labels import LabelMap, read_mapping
from .staging import advised_command, complete, finish_publish, head_sha256, rebuild_command
from .tokenizers import REGISTRY, load_tokenizer
from .unit import ConvertError, Settings, convert_unit

if TYPE_CHECKING:  # the pipeline calls this module: a type-only import, no import cycle
    from .pipeline import ConvertOptions

__all__ = ["damaged_shards", "resume_complete", "finish_publish", "complete"]


def damaged_shards(directory: Path, manifest: dict[str, Any]) -> list[int]:
    """Indices of the manifest's shards that are not intact (:func:`shards.check_shard`, hashed)."""
    return [i for i, entry in enumerate(manifest["shards"])
            if not fmt.check_shard(directory / entry["file"], entry, hash=True).intact]


def _given(opts: ConvertOptions, name: str, defaults: ConvertOptions) -> bool:
    """Whether option ``name`` was given (on the command line or in --config)."""
    if opts.given is not None:
        return name in opts.given
    return getattr(opts, name) != getattr(defaults, name)


def _input_differences(opts: ConvertOptions, src: dict[str, Any]) -> list[str]:
    """How the given inputs differ from those the dataset records (name, size, first MiB)."""
    names = [os.path.basename(p) for p in opts.inputs]
    if names != list(src.get("inputs", [])):
        return [f"the inputs are {names}, the dataset was made from {src.get('inputs')}"]
    out = []
    sizes, heads = src.get("input_bytes"), src.get("input_head_sha256")  # absent in older datasets
    for i, p in enumerate(opts.inputs):
        try:
            size = os.path.getsize(p)
            if sizes is not None and size != sizes[i]:
                out.append(f"input {p} has {size:,} bytes, the one the dataset was made from {sizes[i]:,}")
            elif heads is not None and head_sha256(p) != heads[i]:
                out.append(f"input {p} has other contents than the one the dataset was made from (its first MiB differs)")
        except OSError as exc:
            out.append(f"input {p} cannot be read ({exc.strerror or exc})")
    return out


def _differences(opts: ConvertOptions, manifest: dict[str, Any]) -> list[str]:
    """Each given input or option that contradicts the dataset, in words (no tokenizer loaded)."""
    defaults = type(opts)(inputs=[], out="")  # the options' defaults
    src = manifest.get("source", {})
    want = {
        "header_regex": src.get("header_regex"),
        "reads_per_shard": src.get("reads_per_shard"),
        "layout": manifest["layout"],
        "max_length": manifest["max_length"],
    }
    if manifest["layout"] == "compressed":
        want["compression"] = manifest["compression"]
    differ = [f"--{k.replace('_', '-')} {getattr(opts, k)!r} was given (the dataset has {v!r})" for k, v in want.items()
              if _given(opts, k, defaults) and str(getattr(opts, k)) != str(v)
              and not (k == "max_length" and getattr(opts, k) == "auto")]
    differ += _input_differences(opts, src)
    if opts.mapping is not None and read_mapping(opts.mapping).sha256 != src.get("mapping_sha256"):
        differ.append(f"--mapping {opts.mapping} is not the mapping the dataset was made with")
    return differ


def _refuse(opts: ConvertOptions, out: Path, differ: list[str]) -> ConvertError:
    fix = advised_command(opts, add=("--overwrite",), drop=("--resume",))
    if opts.mapping is None and opts.command is not None:
        fix = fix[:-1] + " --mapping TSV`, TSV being the mapping of class ids to labels"
    return ConvertError(
        f"--resume on the complete dataset {out} only checks it and re-converts damaged shards with the inputs "
        f"and settings it was made with, but {'; '.join(differ)}. Nothing was changed. To replace the dataset "
        f"with a conversion of these inputs and settings run {fix}; to check the dataset, rerun --resume with its "
        "own inputs and settings."
    )


def _settings(opts: ConvertOptions, manifest: dict[str, Any], staging: Path, out: Path) -> Settings:
    """The conversion settings of ``manifest``; a ConvertError where ``opts`` contradicts it."""
    defaults = type(opts)(inputs=[], out="")  # the options' defaults
    src = manifest.get("source", {})
    differ = _differences(opts, manifest)
    have_tok = manifest["tokenizer"]
    spec = opts.tokenizer if _given(opts, "tokenizer", defaults) else have_tok.get("name")
    if spec not in REGISTRY and not Path(str(spec)).exists():
        raise ConvertError(
            f"{out}: the dataset was tokenized with a tokenizer file ({have_tok.get('file', spec)}); "
            "repeat its --tokenizer PATH with --resume"
        )
    tok = load_tokenizer(str(spec))
    if tok.info != have_tok:
        differ.append(f"--tokenizer {spec} is {fmt.describe_tokenizer(tok.info)} (the dataset has "
                      f"{fmt.describe_tokenizer(have_tok)})")
    if differ:
        raise _refuse(opts, out, differ)
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


def _check_manifest_describes_shards(opts: ConvertOptions, out: Path, manifest: dict[str, Any]) -> None:
    """A ConvertError when intact shards (size and sha256 as recorded) disagree with the manifest.

    Then the manifest itself was changed: --resume re-converts shards, which are fine, and
    cannot rebuild the manifest's other records, so it must not say ``already complete``.
    """
    problems = [p for i, e in enumerate(manifest["shards"])
                for p in fmt.shard_layout_problems(out / e["file"], e, manifest, i)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConvertError(
            f"{out / fmt.MANIFEST_NAME} disagrees with its shards, whose contents are intact (size and sha256 as "
            f"recorded): {problems[0]}{more}. --resume re-converts damaged shards but cannot rebuild a changed "
            f"manifest; nothing was changed. Convert the dataset anew with {rebuild_command(manifest, out, opts)}."
        )


def resume_complete(opts: ConvertOptions, out: Path, staging: Path) -> dict[str, Any]:
    """Check a published dataset and re-convert its damaged shards; return its report + ``resume``.

    ``staging`` is locked by the caller (:func:`convert.pipeline.hold_staging`), which removes
    it afterwards; it holds no staged conversion. The given inputs and options are compared
    with the dataset's before anything else, damaged or not.

    Raises:
        ConvertError: settings or inputs that contradict the dataset, or a re-converted shard
            whose hash differs from the manifest (the inputs changed).
        FormatError: an unreadable manifest.
    """
    manifest = fmt.read_manifest(out)
    if _given(opts, "tokenizer", type(opts)(inputs=[], out="")):
        _settings(opts, manifest, staging, out)  # compares everything, the given tokenizer too
    differ = _differences(opts, manifest)
    if differ:
        raise _refuse(opts, out, differ)
    report = _report(out)
    bad = damaged_shards(out, manifest)
    if not bad:
        _check_manifest_describes_shards(opts, out, manifest)
        report["resume"] = f"already complete: {len(manifest['shards'])} shards verified (size and sha256)"
        return report
    (staging / ".units").mkdir(exist_ok=True)
    settings = _settings(opts, manifest, staging, out)
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
