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
