"""Issue 21, item 6: ``verify`` checks everything the dataset claims: row counts against the
HDF5 shapes, report.json present and reconciling with the manifest and the shards, and
quarantine.fa / quarantine.tsv consistent with the report."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from conftest import REPO, write_reads
import shards as fmt
from convert.cli import main


def _run(*args: str | os.PathLike[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A converted dataset (4 shards, 2 quarantined records) and its input."""
    tmp = tmp_path_factory.mktemp("verify3")
    inp, mapping = write_reads(tmp / "in" / "r.fa", n_per_class=50)
    inp.write_bytes(inp.read_bytes() + b">no_label_here\nACGT\n>lbl|10||4|x/1\nAC!T\n")
    out = tmp / "ds"
    rc, _, err = _run(inp, "--mapping", mapping, "--out", out, "--tokenizer", "dnabert-6mer",
                      "--reads-per-shard", "60", "--no-progress")
    assert rc == 0, err
    return out, inp


def _json_edit(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        body = json.loads((d / name).read_text())
        change(body)
        (d / name).write_text(json.dumps(body))
    return edit


def _lower_rows(m: dict) -> None:
    m["shards"][-1]["num_rows"] -= 1
    m["totals"]["num_rows"] -= 1


def _move_one_read(r: dict) -> None:
    a, b = list(r["per_class"])[:2]
    r["per_class"][a] += 1
    r["per_class"][b] -= 1


DAMAGE = [
    ("manifest num_rows lowered by one", _json_edit(fmt.MANIFEST_NAME, _lower_rows), r"shard-00003.h5: attribute num_rows=20, expected 19"),
    ("report.json deleted", lambda d: (d / fmt.REPORT_NAME).unlink(), r"report.json is missing"),
    ("report.json not an object", lambda d: (d / fmt.REPORT_NAME).write_text("[]"), r"report.json: not a JSON object"),
    ("report.json without a count", _json_edit(fmt.REPORT_NAME, lambda r: r.pop("written")), r"report.json: malformed"),
    ("report per_class moved", _json_edit(fmt.REPORT_NAME, _move_one_read), r"per_class disagrees with the shards"),
    ("report records_in", _json_edit(fmt.REPORT_NAME, lambda r: r.update(records_in=203, skipped=3)),
     r"records_in is 203, the manifest's source says 202"),
    ("quarantine.fa emptied", lambda d: (d / fmt.QUARANTINE_NAME).write_bytes(b""), r"quarantine.fa: 0 bytes, the report says \d+"),
    ("quarantine.fa truncated", lambda d: (d / fmt.QUARANTINE_NAME).write_bytes((d / fmt.QUARANTINE_NAME).read_bytes()[:-2]),
     r"emptied, truncated or replaced"),
    ("quarantine.fa deleted", lambda d: (d / fmt.QUARANTINE_NAME).unlink(), r"quarantine.fa is missing"),
    ("quarantine.tsv deleted", lambda d: (d / "quarantine.tsv").unlink(), r"quarantine.tsv is missing"),
    ("quarantine.tsv row garbled", lambda d: (d / "quarantine.tsv").write_text(
        (d / "quarantine.tsv").read_text().replace("\tnon_nucleotide", "")), r"quarantine.tsv, line 3: malformed row"),
]


def test_pristine_dataset_verifies(built) -> None:
    out, inp = built
    rc, stdout, _ = _run("verify", out, "--no-progress", "--source", inp)
    assert rc == 0, stdout


@pytest.mark.parametrize(("change", "message"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
@pytest.mark.parametrize("with_source", [False, True], ids=["plain", "source"])
def test_verify_finds_the_damage(built, tmp_path: Path, change, message: str, with_source: bool) -> None:
    out, inp = built
    ds = tmp_path / "ds"
    shutil.copytree(out, ds)
    change(ds)
    before = sorted(p.name for p in ds.iterdir())
    extra = ("--source", str(inp)) if with_source else ()
    rc, stdout, stderr = _run("verify", ds, "--no-progress", *extra)
    assert rc == 1 and "Traceback" not in stdout + stderr
    assert stdout.splitlines()[-1].startswith("FAILED: ")
    import re

    assert re.search(message, stdout), stdout
    assert sorted(p.name for p in ds.iterdir()) == before  # verify only reads


def test_verify_a_deleted_report_in_a_real_process(built, tmp_path: Path) -> None:
    out, _ = built
    ds = tmp_path / "ds"
    shutil.copytree(out, ds)
    (ds / fmt.REPORT_NAME).unlink()
    proc = subprocess.run([sys.executable, "-m", "convert", "verify", str(ds), "--no-progress"], capture_output=True,
                          text=True, cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "report.json is missing" in proc.stdout and "--overwrite" in proc.stdout
