"""Format drift: another format version, or another tokenizer than expected, is refused.

The message must say what to do (re-convert, or change the config / install the release).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest

from conftest import Ran, convert_cli, converted_reads
import shards as fmt
from convert.tokenizers import load_tokenizer
from convert.verify import verify_dataset
from loaders import ShardDataset


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return converted_reads(tmp_path_factory.mktemp("drift"), n_per_class=60, classes=2, reads_per_shard=50)[2]


@pytest.fixture
def ds(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "ds")
    return tmp_path / "ds"


def _edit_manifest(ds: Path, **changes) -> None:
    m = json.loads((ds / "manifest.json").read_text())
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    (ds / "manifest.json").write_text(json.dumps(m))


def _verify_cli(ds: Path) -> Ran:
    return convert_cli("verify", ds)


@pytest.mark.parametrize("version", [0, fmt.FORMAT_VERSION + 1, "1", None])
def test_other_manifest_format_version_refused(ds: Path, version) -> None:
    _edit_manifest(ds, format_version=version)
    for opener in (fmt.read_manifest, ShardDataset, lambda p: ShardDataset(p, verify=True)):
        with pytest.raises(fmt.FormatError) as err:
            opener(ds)
        msg = str(err.value)
        assert f"format version {version!r}" in msg and "Re-convert" in msg and "python -m convert" in msg
    res = _verify_cli(ds)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "Re-convert" in res.stdout and "format version" in res.stdout


def test_old_shard_in_current_manifest_refused_by_verify(ds: Path) -> None:
    """A shard written by an older version (its attribute), even with a matching manifest hash."""
    m = json.loads((ds / "manifest.json").read_text())
    e = m["shards"][1]
    with h5py.File(ds / e["file"], "r+") as f:
        f.attrs["format_version"] = 0
    # Re-hash so only the version check can catch it.
    e["sha256"], e["bytes"] = fmt.file_sha256(ds / e["file"]), (ds / e["file"]).stat().st_size
    (ds / "manifest.json").write_text(json.dumps(m))
    r = verify_dataset(ds)
    assert not r["ok"]
    [msg] = [p for p in r["problems"] if "format version" in p]
    assert e["file"] in msg and "version 0" in msg and "re-convert" in msg


def test_other_format_name_refused(ds: Path) -> None:
    _edit_manifest(ds, format="something-else")
    with pytest.raises(fmt.FormatError, match="not a readshard manifest"):
        ShardDataset(ds)


@pytest.mark.parametrize(
    "expect, ok",
    [
        ("same", True),
        ({"name": "metagene-1"}, True),
        ({"name": "char"}, False),
        ("dnabert-6mer", False),
        ({"name": "metagene-1", "sha256": "0" * 64}, False),  # same name, other tokenizer file
    ],
)
def test_tokenizer_expected_by_config(ds: Path, expect, ok: bool) -> None:
    have = load_tokenizer("metagene-1").info
    if expect == "same":
        expect = have
    elif isinstance(expect, str):
        expect = load_tokenizer(expect).info
    if ok:
        assert len(ShardDataset(ds, expect_tokenizer=expect)) == 120
        return
    with pytest.raises(fmt.FormatError) as err:
        ShardDataset(ds, expect_tokenizer=expect)
    msg = str(err.value)
    assert "metagene-1" in msg and str(expect["name"]) in msg
    assert "Re-convert with the expected tokenizer" in msg and "change the config" in msg


def test_max_length_expected_by_config(ds: Path) -> None:
    L = fmt.read_manifest(ds)["max_length"]
    assert len(ShardDataset(ds, expect_max_length=L)) == 120
    with pytest.raises(fmt.FormatError, match="--max-length"):
        ShardDataset(ds, expect_max_length=L + 8)


def test_manifest_missing_says_convert_or_resume(ds: Path) -> None:
    (ds / "manifest.json").unlink()
    with pytest.raises(fmt.FormatError, match="--resume"):
        ShardDataset(ds)
    res = _verify_cli(ds)
    assert res.returncode == 1 and "not a complete readshard dataset" in res.stdout
