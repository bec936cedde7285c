"""``--resume`` on a complete dataset is idempotent and repairs damaged shards; the advice
the loader and verify print for a damaged shard is a command that works (the tests run it)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import convert_cli, write_reads
import shards as fmt
from convert.verify import verify_dataset
from loaders import ShardDataset


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path, Path]:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=60)
    out = tmp_path / "ds"
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--reads-per-shard", "50", "--tokenizer", "dnabert-6mer",
                    "--no-progress")
    assert r.returncode == 0, r.stderr
    return inp, mapping, out


def _digests(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _advised(message: str, inp: Path, out: Path) -> list[str]:
    """The `python -m convert ...` command in an error message, with INPUT and DIR filled in."""
    cmd = re.search(r"`python -m convert ([^`]*)`", message)
    assert cmd, message
    words = shlex.split(cmd.group(1))
    return [str(inp) if w == "INPUT" else str(out) if w == "DIR" else w for w in words]


def test_resume_on_complete_dataset_is_a_verified_no_op(made) -> None:
    inp, mapping, out = made
    before = _digests(out)
    r = convert_cli(inp, "--out", out, "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "already complete" in r.stdout
    assert _digests(out) == before


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    "damage, open_kw",
    [(_flip, {"verify": True}), (_truncate, {}), (Path.unlink, {})],
    ids=["corrupt", "truncated", "missing"],
)
def test_loader_advice_repairs_the_damaged_shard(made, damage, open_kw) -> None:
    inp, mapping, out = made
    before = _digests(out)
    damage(out / "shard-00003.h5")
    with pytest.raises(fmt.FormatError) as err:
        ShardDataset(out, **open_kw)
    r = convert_cli(*_advised(str(err.value), inp, out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "repaired 1 of" in r.stdout and "shard-00003.h5" in r.stdout
    assert _digests(out) == before  # byte-identical to the original shard
    assert verify_dataset(out)["ok"]
    ShardDataset(out, verify=True)


def test_verify_advice_repairs(made) -> None:
    inp, mapping, out = made
    _flip(out / "shard-00001.h5")
    _flip(out / "shard-00004.h5")
    res = verify_dataset(out)
    assert not res["ok"]
    text = " ".join(res["messages"])
    r = convert_cli(*_advised(text, inp, out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "repaired 2 of" in r.stdout
    assert verify_dataset(out)["ok"]


def test_repair_refuses_other_inputs_and_keeps_the_shard(made, tmp_path: Path) -> None:
    inp, mapping, out = made
    _flip(out / "shard-00000.h5")
    damaged = (out / "shard-00000.h5").read_bytes()
    other, _ = write_reads(tmp_path / "other" / "r.fa", n_per_class=60, seed=5)
    r = convert_cli(other, "--out", out, "--resume", "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    # Other contents under the same name: refused before any unit is re-converted (issue 21).
    assert "the one the dataset was made from" in r.stderr and "--overwrite" in r.stderr
    assert (out / "shard-00000.h5").read_bytes() == damaged
    assert not any(p.name.startswith(".") for p in out.parent.iterdir() if p.name != "in")


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--reads-per-shard", "70"], "--reads-per-shard"),
        (["--tokenizer", "dnabert-2"], "--tokenizer"),
        (["--layout", "compressed"], "--layout"),
    ],
)
def test_repair_refuses_contradicting_settings(made, flags: list[str], needle: str) -> None:
    inp, mapping, out = made
    _flip(out / "shard-00000.h5")
    r = convert_cli(inp, "--out", out, "--resume", "--no-progress", *flags)
    assert r.returncode == 2 and needle in r.stderr and "--overwrite" in r.stderr


def test_existing_output_message_offers_resume(made) -> None:
    inp, mapping, out = made
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--no-progress")
    assert r.returncode == 2 and "--resume" in r.stderr


def test_repair_of_a_split_side(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=60)
    out = tmp_path / "s"
    r = convert_cli(inp, "--mapping", mapping, "--out", out, "--split", "val=0.3", "--reads-per-shard", "50",
                    "--no-progress")
    assert r.returncode == 0, r.stderr
    before = _digests(out / "val")
    _flip(out / "val" / "shard-00002.h5")
    r = convert_cli(inp, "--out", out / "val", "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "repaired 1 of" in r.stdout and _digests(out / "val") == before
