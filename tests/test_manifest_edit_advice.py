"""A manifest changed by hand over intact shards: verify and --resume advise a command that works.

The shards' size and sha256 are as recorded, so --resume finds nothing to re-convert; it must
not answer "already complete", and neither it nor verify may advise --resume. The advised
``--overwrite`` command, run as printed (the mapping filled in), rebuilds the dataset.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from conftest import convert_cli, write_reads


def _lower_rows(out: Path) -> None:
    path = out / "manifest.json"
    m = json.loads(path.read_text())
    m["shards"][0]["num_rows"] -= 1
    m["totals"]["num_rows"] -= 1
    path.write_text(json.dumps(m))


def _advised(text: str, mapping: Path) -> list[str]:
    cmd = re.findall(r"`(python -m convert [^`]*--overwrite)`", text)
    assert cmd, text
    argv = shlex.split(cmd[0])[3:]
    return [str(mapping) if a == "TSV" else a for a in argv]


def test_edited_manifest_is_not_already_complete_and_the_advice_rebuilds_it(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "reads.fa", n_per_class=60, classes=3)
    out = tmp_path / "ds"
    args = (inp, "--mapping", mapping, "--out", out, "--tokenizer", "char", "--max-length", "160",
            "--reads-per-shard", "50", "--no-progress")
    assert convert_cli(*args).returncode == 0
    _lower_rows(out)

    ver = convert_cli("verify", out)
    assert ver.returncode == 1
    text = ver.stdout + ver.stderr
    assert "--resume" not in text and "manifest disagrees" in text

    res = convert_cli(inp, "--out", out, "--resume")
    assert res.returncode == 2 and "already complete" not in res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "nothing was changed" in res.stderr

    # verify's command names the inputs by file name: it runs in their directory.
    rebuilt = convert_cli(*_advised(text, mapping), cwd=inp.parent)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert convert_cli("verify", out).returncode == 0
    _lower_rows(out)
    res = convert_cli(inp, "--out", out, "--resume")
    assert convert_cli(*_advised(res.stderr, mapping)).returncode == 0
    assert convert_cli("verify", out).returncode == 0
