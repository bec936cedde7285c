"""A bad mapping TSV is one clear error naming the file and line, never a traceback (real CLI runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _safety_helpers import assert_refused, snapshot
from conftest import DATA, convert_cli

CASES = [
    # (mapping bytes, text the error must hold)
    (b"class_id\ttax_id\tspecies\n7\t11\tEsch\xe9richia\n42\t\tB\n", "line 2"),
    (b"class_id\ttax_id\tspecies\n7\t3000000000\tbig tax\n42\t\tB\n", "line 2"),
    (b"class_id\ttax_id\tspecies\n7\t11\tA\n99999999999\t\tB\n", "line 3"),
    (b"class_id\ttax_id\tspecies\n7\t-4\tA\n42\t\tB\n", "line 2"),
]


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("mapping, where", CASES)
def test_bad_mapping_is_a_clear_error(tmp_path: Path, mapping: bytes, where: str, jobs: str) -> None:
    path = tmp_path / "mapping.tsv"
    path.write_bytes(mapping)
    before = snapshot(tmp_path)
    res = convert_cli(DATA / "multiline.fa", "--mapping", path, "--out", tmp_path / "out", "--tokenizer", "char",
                      "--jobs", jobs, "--no-progress")
    assert_refused(res, f"{path}, {where}")
    assert snapshot(tmp_path) == before
