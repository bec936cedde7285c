"""Benches delete only inside directories they made: a typed path with the user's files is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from readshard_bench.workdir import MARKER, claim_workdir


def test_new_and_empty_directories_are_claimed(tmp_path: Path) -> None:
    new = claim_workdir(tmp_path / "a" / "b")
    assert (new / MARKER).is_file()
    (tmp_path / "empty").mkdir()
    assert (claim_workdir(tmp_path / "empty") / MARKER).is_file()
    (new / "hf_out").mkdir()
    assert claim_workdir(new) == new  # already ours: reused


@pytest.mark.parametrize("case", ["user_files", "symlink", "file"])
def test_foreign_paths_are_refused_untouched(tmp_path: Path, case: str) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "hf_out").mkdir()
    (target / "hf_out" / "thesis.tex").write_text("keep")
    path = {"user_files": target, "symlink": tmp_path / "link", "file": tmp_path / "f"}[case]
    if case == "symlink":
        os.symlink(target, path)
    if case == "file":
        path.write_text("x")
    with pytest.raises(SystemExit, match="--workdir"):
        claim_workdir(path)
    assert (target / "hf_out" / "thesis.tex").read_text() == "keep" and not (target / MARKER).exists()


def test_convert_bench_refuses_a_workdir_with_user_files(tmp_path: Path) -> None:
    from readshard_bench.convert_bench import main

    (tmp_path / "hf_out").mkdir()
    (tmp_path / "hf_out" / "results.csv").write_text("keep")
    with pytest.raises(SystemExit, match="did not make"):
        main(["--fragments-per-species", "10", "--workdir", str(tmp_path), "--skip-hf", "--no-1-job"])
    assert (tmp_path / "hf_out" / "results.csv").read_text() == "keep"


@pytest.mark.parametrize("case", ["user_files", "symlink"])
def test_convert_bench_removes_only_a_dataset_at_its_output(tmp_path: Path, case: str) -> None:
    """Each converter run starts from a new --out: an earlier run's dataset is removed, nothing else."""
    from readshard_bench.convert_bench import run_readshard

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    out = tmp_path / "readshard_out"
    if case == "symlink":
        os.symlink(mine, out)
    else:
        out.mkdir()
        (out / "notes.txt").write_text("keep")
    with pytest.raises(SystemExit, match="refusing|not a readshard dataset"):
        run_readshard(tmp_path / "r.fa", tmp_path / "m.tsv", out, 1)
    assert (mine / "notes.txt").read_text() == "keep"
    assert (out / "notes.txt").read_text() == "keep"


@pytest.mark.slow  # two converter bench runs
def test_convert_bench_replaces_its_earlier_dataset(tmp_path: Path) -> None:
    from conftest import write_reads
    from readshard_bench.convert_bench import run_readshard

    inp, mapping = write_reads(tmp_path / "r.fa", n_per_class=200, classes=2)
    out = tmp_path / "readshard_out"
    first = run_readshard(inp, mapping, out, 1)
    second = run_readshard(inp, mapping, out, 1)
    assert first["reads"] == second["reads"] == 400
    assert (out / "manifest.json").is_file()
