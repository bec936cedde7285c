"""--out, --overwrite, staging, lock and trash never destroy what the converter did not create.

Each case runs the CLI's main (in-process) on real files and checks exit code 2, one
paragraph naming the path, no traceback, and that nothing at all changed on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

from _safety_helpers import assert_refused, snapshot
from conftest import convert_cli, write_reads
from convert.labels import DEFAULT_HEADER_REGEX

FAST = ("--tokenizer", "char", "--max-length", "512", "--no-progress")


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    """A small labeled FASTA and its mapping in ``tmp_path/in``."""
    return write_reads(tmp_path / "in" / "reads.fa", n_per_class=20)


def _dataset(inp: Path, mapping: Path, out: Path) -> None:
    res = convert_cli(inp, "--mapping", mapping, "--out", out, *FAST)
    assert res.returncode == 0, res.stderr


def _refused_untouched(root: Path, args: tuple, *needles: str) -> None:
    """``python -m convert ARGS`` is refused (exit 2, one paragraph naming ``needles``) and nothing
    under ``root`` changed."""
    before = snapshot(root)
    assert_refused(convert_cli(*args), *needles)
    assert snapshot(root) == before


def test_overwrite_refuses_the_inputs_directory(small: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = small
    (inp.parent / "notes.txt").write_text("my notes\n")
    _refused_untouched(tmp_path, (inp, "--mapping", mapping, "--out", inp.parent, "--overwrite", *FAST), str(inp))


def test_overwrite_refuses_a_directory_that_is_not_a_dataset(small: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = small
    other = tmp_path / "results"
    other.mkdir()
    (other / "figure.png").write_bytes(b"\x89PNG")
    (other / "manifest.json").write_text('{"name": "a web app manifest"}')
    _refused_untouched(tmp_path, (inp, "--mapping", mapping, "--out", other, "--overwrite", *FAST),
                       str(other), "not a readshard dataset", "figure.png")


def test_overwrite_replaces_a_dataset_or_an_empty_directory(small: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = small
    empty = tmp_path / "empty"
    empty.mkdir()
    res = convert_cli(inp, "--mapping", mapping, "--out", empty, "--overwrite", *FAST)
    assert res.returncode == 0, res.stderr
    res = convert_cli(inp, "--mapping", mapping, "--out", empty, "--overwrite", "--reads-per-shard", "7", *FAST)
    assert res.returncode == 0, res.stderr
    assert json.loads((empty / "manifest.json").read_text())["source"]["reads_per_shard"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "in"]


def test_overwrite_refuses_a_dataset_holding_an_input(small: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = small
    out = tmp_path / "out"
    _dataset(inp, mapping, out)
    moved = out / "reads.fa"
    inp.rename(moved)
    _refused_untouched(tmp_path, (moved, "--mapping", mapping, "--out", out, "--overwrite", *FAST),
                       str(moved), "inside --out")


def test_overwrite_refuses_a_mapping_inside_out(small: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = small
    out = tmp_path / "out"
    _dataset(inp, mapping, out)
    inner = out / "mapping.tsv"
    inner.write_bytes(mapping.read_bytes())
    _refused_untouched(tmp_path, (inp, "--mapping", inner, "--out", out, "--overwrite", *FAST), str(inner))


@pytest.mark.parametrize("overwrite", [False, True])
def test_out_that_is_a_regular_file_is_refused(small: tuple[Path, Path], tmp_path: Path, overwrite: bool) -> None:
    inp, mapping = small
    out = tmp_path / "thesis.txt"
    out.write_text("four years of work\n")
    flags = ["--overwrite"] if overwrite else []
    _refused_untouched(tmp_path, (inp, "--mapping", mapping, "--out", out, *FAST, *flags), str(out), "regular file")


@pytest.mark.parametrize("target", ["missing", "dataset"])
def test_out_that_is_a_symlink_is_refused(small: tuple[Path, Path], tmp_path: Path, target: str) -> None:
    inp, mapping = small
    dest = tmp_path / "elsewhere" / "data"
    if target == "dataset":
        _dataset(inp, mapping, dest)
    link = tmp_path / "link"
    link.symlink_to(dest)
    _refused_untouched(tmp_path, (inp, "--mapping", mapping, "--out", link, "--overwrite", *FAST),
                       str(link), "symbolic link")


@pytest.mark.parametrize("mode", ["--resume", "--overwrite"])
def test_staging_symlink_is_refused(small: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    inp, mapping = small
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    out = tmp_path / "out"
    staging = tmp_path / ".out.readshard-partial"
    staging.symlink_to(victim)
    _refused_untouched(tmp_path, (inp, "--mapping", mapping, "--out", out, mode, *FAST),
                       str(staging), "symbolic link")


@pytest.mark.parametrize("entry", [".lock", ".units", ".units/.workers.lock", "plan.json", ".shard-00000.h5.tmp"])
def test_symlink_inside_staging_is_refused(small: tuple[Path, Path], tmp_path: Path, entry: str) -> None:
    inp, mapping = small
    user_file = tmp_path / "user.txt"
    user_file.write_text("user data\n")
    staging = tmp_path / ".out.readshard-partial"
    (staging / ".units").mkdir(parents=True)
    if entry != ".lock":
        (staging / ".lock").write_text("")
    if entry == ".units":
        (staging / ".units").rmdir()
        (tmp_path / "udir").mkdir()
        (staging / ".units").symlink_to(tmp_path / "udir")
    else:
        (staging / entry).symlink_to(user_file)
    _refused_untouched(tmp_path, (inp, "--mapping", mapping, "--out", tmp_path / "out", "--resume", *FAST),
                       str(staging / entry), "symbolic link")


def test_hardlinked_lock_is_refused(small: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = small
    user_file = tmp_path / "user.txt"
    user_file.write_text("user data\n")
    staging = tmp_path / ".out.readshard-partial"
    staging.mkdir()
    os.link(user_file, staging / ".lock")
    _refused_untouched(tmp_path, (inp, "--mapping", mapping, "--out", tmp_path / "out", "--resume", *FAST),
                       str(staging / ".lock"), "hard-linked")


def test_staging_not_made_by_the_converter_is_refused(small: tuple[Path, Path], tmp_path: Path) -> None:
    inp, mapping = small
    staging = tmp_path / ".out.readshard-partial"
    staging.mkdir()
    (staging / "mine.txt").write_text("not the converter's\n")
    _refused_untouched(tmp_path, (inp, "--mapping", mapping, "--out", tmp_path / "out", "--overwrite", *FAST),
                       str(staging), "mine.txt")


@pytest.mark.parametrize("kind", ["symlink", "user_dir"])
def test_trash_that_is_not_ours_is_refused(small: tuple[Path, Path], tmp_path: Path, kind: str) -> None:
    inp, mapping = small
    out = tmp_path / "out"
    _dataset(inp, mapping, out)
    trash = tmp_path / ".out.readshard-old"
    if kind == "symlink":
        (tmp_path / "victim").mkdir()
        (tmp_path / "victim" / "precious.txt").write_text("keep me\n")
        trash.symlink_to(tmp_path / "victim")
    else:
        trash.mkdir()
        (trash / "precious.txt").write_text("keep me\n")
    _refused_untouched(tmp_path, (inp, "--mapping", mapping, "--out", out, "--overwrite", *FAST), str(trash))


def test_leftover_trash_dataset_is_cleaned(small: tuple[Path, Path], tmp_path: Path) -> None:
    """A crash mid-publish leaves the old dataset in the trash: the next --overwrite removes it."""
    inp, mapping = small
    out = tmp_path / "out"
    _dataset(inp, mapping, out)
    _dataset(inp, mapping, tmp_path / ".out.readshard-old")
    res = convert_cli(inp, "--mapping", mapping, "--out", out, "--overwrite", *FAST)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def _unit_with_a_planted_link(tmp_path: Path, name: str) -> tuple[Callable[[], object], Path, Path]:
    """(convert the unit, staging, victim): a unit of small reads whose staging has a link to ``victim``
    at ``name``, planted as if during a run (after the start-up check)."""
    from convert.fastx import Unit
    from convert.labels import read_mapping
    from convert.unit import Settings, convert_unit

    inp, mapping = write_reads(tmp_path / "r.fa", n_per_class=5)
    staging = tmp_path / ".out.readshard-partial"
    (staging / ".units").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (staging / name).symlink_to(victim)
    unit = Unit(str(inp), 0, 0, 1, 0, inp.read_bytes(), "fasta")
    s = Settings(tokenizer="char", max_length=16, header_regex=DEFAULT_HEADER_REGEX, label_map=read_mapping(str(mapping)),
                 layout="mmap", compression="gzip", on_bad_record="skip", staging=str(staging), dataset_id="ab" * 16)
    return (lambda: convert_unit(unit, 0, s)), staging, victim


@pytest.mark.parametrize("name", [".units/q-00000.fa.tmp", ".units/q-00000.tsv.tmp", ".units/q-00000.ends.tmp",
                                  ".shard-00000.h5.tmp", ".units/.u-00000.json.tmp"])
def test_worker_never_writes_through_a_link_planted_in_staging(tmp_path: Path, name: str) -> None:
    """A link that appears in staging during a run (after the start-up check) is not followed."""
    run_unit, _, victim = _unit_with_a_planted_link(tmp_path, name)
    with pytest.raises(OSError, match="symbolic link"):
        run_unit()
    assert victim.read_text() == "keep me\n"


@pytest.mark.parametrize("name", ["shard-00000.h5", ".units/q-00000.fa", ".units/q-00000.tsv", ".units/q-00000.ends",
                                  ".units/u-00000.json"])
def test_rename_replaces_a_link_planted_at_a_final_name(tmp_path: Path, name: str) -> None:
    """A link planted where a unit's file is renamed to is replaced by the file, never written through."""
    run_unit, staging, victim = _unit_with_a_planted_link(tmp_path, name)
    run_unit()
    assert victim.read_text() == "keep me\n"
    assert not (staging / name).is_symlink() and (staging / name).is_file()
