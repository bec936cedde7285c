"""Tokenizer identity by content: a copy of a registry tokenizer is that tokenizer; checks compare sha256."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO, write_reads
from convert import ConvertOptions, convert
import shards as fmt
from convert.tokenizers import identity, load_tokenizer
from loaders import ShardDataset

ASSETS = REPO / "convert" / "assets" / "tokenizers"


@pytest.mark.parametrize(
    "src, as_dir, want",
    [
        ("metagene-1/tokenizer.json", False, "metagene-1"),
        ("metagene-1/tokenizer.json", True, "metagene-1"),
        ("dnabert-2-117m/tokenizer.json", False, "dnabert-2"),
        ("dnabert-6mer/vocab.txt", True, "dnabert-6mer"),
    ],
)
def test_copy_of_registry_file_records_registry_name(tmp_path: Path, src: str, as_dir: bool, want: str) -> None:
    d = tmp_path / "my_tok"
    d.mkdir()
    shutil.copy(ASSETS / src, d / Path(src).name)
    tok = load_tokenizer(str(d if as_dir else d / Path(src).name))
    assert tok.info["name"] == want
    assert tok.info == load_tokenizer(want).info


def test_edited_file_keeps_its_own_identity(tmp_path: Path) -> None:
    spec = json.loads((ASSETS / "metagene-1" / "tokenizer.json").read_text())
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))  # same tokens, other bytes: not the registry file
    tok = load_tokenizer(str(path))
    assert tok.info["name"] == "tokenizer" and tok.info["sha256"] != identity("metagene-1")["sha256"]


def _dataset(tmp_path: Path, tokenizer: str) -> Path:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=20)
    out = tmp_path / "ds"
    convert(ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), tokenizer=tokenizer, progress=False))
    return out


def test_conversion_by_path_is_accepted_where_the_registry_name_is_expected(tmp_path: Path) -> None:
    out = _dataset(tmp_path, str(ASSETS / "metagene-1" / "tokenizer.json"))
    assert fmt.read_manifest(out)["tokenizer"]["name"] == "metagene-1"
    ShardDataset(out, expect_tokenizer=identity("metagene-1"))  # no FormatError
    from train.loop import tokenizer_identity

    ShardDataset(out, expect_tokenizer=tokenizer_identity("metagene-1"))


def test_checks_compare_sha256_not_names(tmp_path: Path) -> None:
    out = _dataset(tmp_path, "metagene-1")
    m = json.loads((out / "manifest.json").read_text())
    m["tokenizer"]["name"] = "tokenizer"  # a dataset written by path before identity-by-content
    (out / "manifest.json").write_text(json.dumps(m))
    ShardDataset(out, expect_tokenizer=identity("metagene-1"))
    with pytest.raises(fmt.FormatError, match="tokenized with") as err:
        ShardDataset(out, expect_tokenizer=identity("dnabert-2"))
    assert "dnabert-2" in str(err.value) and "None" not in str(err.value)


@pytest.mark.parametrize(
    "have, expect",
    [
        ({"name": "x"}, {"name": "y"}),
        ({"name": "x", "sha256": None}, {"name": "y", "sha256": "ab" * 32}),
        ({"sha256": "cd" * 32}, {"name": "y", "sha256": "ab" * 32}),
        ({}, {"name": "y"}),
    ],
)
def test_mismatch_messages_never_print_none(have: dict, expect: dict) -> None:
    with pytest.raises(fmt.FormatError) as err:
        fmt.check_compatible({"tokenizer": have, "max_length": 8}, tokenizer=expect)
    assert "None" not in str(err.value) and "'y'" in str(err.value)
