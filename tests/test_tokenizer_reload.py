"""A tokenizer file replaced between two conversions in one process is never served stale."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyfastx
import pytest

from conftest import REPO, write_reads
from convert import ConvertOptions, convert
from shards.reader import ShardReader
from convert.tokenizers import load_tokenizer

ASSETS = REPO / "convert" / "assets" / "tokenizers"


@pytest.mark.parametrize("jobs, parallel", [(1, "auto"), (2, "threads"), (2, "processes")])
def test_replaced_tokenizer_file_is_reloaded(tmp_path: Path, jobs: int, parallel: str) -> None:
    inp, mapping = write_reads(tmp_path / "r.fa", n_per_class=30)
    tok_dir = tmp_path / "tok"
    shutil.copytree(ASSETS / "metagene-1", tok_dir)
    opts = dict(inputs=[str(inp)], mapping=str(mapping), tokenizer=str(tok_dir / "tokenizer.json"), max_length=64,
                jobs=jobs, parallel=parallel, progress=False)
    convert(ConvertOptions(out=str(tmp_path / "a"), **opts))
    # Same path, other file (DNABERT-2's BPE): the second conversion must use it.
    shutil.copy(ASSETS / "dnabert-2-117m" / "tokenizer.json", tok_dir / "tokenizer.json")
    convert(ConvertOptions(out=str(tmp_path / "b"), **opts))
    fresh = load_tokenizer(str(tok_dir / "tokenizer.json"))
    reader = ShardReader(tmp_path / "b")
    assert reader.manifest["tokenizer"]["sha256"] == fresh.info["sha256"]
    ids, lengths = reader.read_vector(0, "input_ids"), reader.read_vector(0, "lengths")
    # Row 0's ids are what the replaced file encodes (not METAGENE-1's).
    first = next(iter(pyfastx.Fasta(str(inp), build_index=False)))[1].encode()
    want, full = fresh.encode(first, np.array([0, len(first)], dtype=np.int64), 64)
    assert int(lengths[0]) == min(int(full[0]), 64)
    assert np.array_equal(ids[0], want[0])
