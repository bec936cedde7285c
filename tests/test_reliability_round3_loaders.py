"""Issue 21, loader side: no fork hang, no corrupt label/length served, one descriptor budget
per process, manifest row counts checked against the shards.

The fork and descriptor cases run in child processes under a hard timeout (a hang fails the
test instead of stalling the suite); the rest call the loaders in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _loader_helpers import build_dataset
from conftest import REPO, run_child, write_reads
from convert import ConvertOptions, convert
from shards import FormatError
from loaders import IterableShardDataset, ReadLoader, ShardDataset, ShuffleBatchSampler

HARD_TIMEOUT_S = 150


def _run_child(code: str, *args: str, timeout: float = HARD_TIMEOUT_S) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; fail on a hang, return its last stdout line as JSON."""
    rc, out, err = run_child([sys.executable, "-c", code, *args], timeout,
                             "child hung (a lock inherited across fork, or a worker waiting forever)")
    assert rc == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


# -- 1. a thread's first read racing a fork ---------------------------------------------------

# Each trial forgets the loaded compiled passes (as a fresh process has none), starts a first
# read in a thread and forks while that read loads and compiles the pass. The forked child
# reads too; the parent waits for it with a deadline and records a hang.
_RACE_CHILD = r"""
import json, os, sys, threading, time
import numpy as np
from loaders import ShardDataset
from loaders import span as _span

path, trials = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
hung = bad = 0
for t in range(trials):
    _span._KERNEL.clear(); _span._PREFETCH.clear()
    ds = ShardDataset(path, prefetch=bool(t % 2))
    idx = rng.permutation(len(ds))[:64]
    expect = ds.labels[idx]
    th = threading.Thread(target=ds.__getitems__, args=(idx,))
    th.start()
    time.sleep(float(rng.uniform(0.0, 0.08)))
    pid = os.fork()
    if pid == 0:
        try:
            ok = np.array_equal(ds.__getitems__(idx)["labels"], expect)
        except BaseException:
            os._exit(4)
        os._exit(0 if ok else 3)
    th.join()
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            bad += os.waitstatus_to_exitcode(status) != 0
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9); os.waitpid(pid, 0); hung += 1
            break
        time.sleep(0.01)
print(json.dumps({"hung": hung, "bad": bad, "trials": trials}))
"""

_DATALOADER_CHILD = r"""
import json, sys, threading, time
import numpy as np, torch
from loaders import ReadLoader, ShardDataset, ShuffleBatchSampler

path, method = sys.argv[1], sys.argv[2]
ds = ShardDataset(path)
first = threading.Thread(target=ds.__getitems__, args=(np.arange(0, len(ds), 9)[:128],))
first.start()  # the first read of this process, racing the workers' start below
time.sleep(0.01)
loader = ReadLoader(ds, ShuffleBatchSampler(len(ds), 64, seed=0), num_workers=2, multiprocessing_context=method)
n = 0
labels = []
for batch in loader:
    n += int(batch["labels"].shape[0]); labels.append(batch["labels"].numpy())
first.join()
ok = np.array_equal(np.sort(np.concatenate(labels)), np.sort(ds.labels.astype(np.int64)))
print(json.dumps({"rows": n, "ok": bool(ok)}))
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("r3small") / "ds"
    build_dataset(d, (300, 0, 200, 150), num_classes=5, max_length=24, seed=3)
    return d


@pytest.mark.slow
def test_first_read_racing_fork_never_hangs(small: Path) -> None:
    result = _run_child(_RACE_CHILD, str(small), "20")
    assert result == {"hung": 0, "bad": 0, "trials": 20}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_workers_start_during_first_read(small: Path, method: str) -> None:
    result = _run_child(_DATALOADER_CHILD, str(small), method)
    assert result == {"rows": 650, "ok": True}


# -- 2. corrupt labels / lengths are never served ---------------------------------------------

def _poke(directory: Path, shard: int, name: str, row: int, value: int) -> None:
    """Overwrite one stored value of vector ``name`` in place (what a bad disk block does)."""
    m = json.loads((directory / "manifest.json").read_text())
    entry = m["shards"][shard]
    dtype = {"labels": np.int32, "lengths": np.int16}[name]
    with open(directory / entry["file"], "r+b") as f:
        f.seek(entry["offsets"][name] + row * np.dtype(dtype).itemsize)
        f.write(np.array([value], dtype=dtype).tobytes())


@pytest.fixture(scope="module", params=[("labels", 200), ("labels", -1), ("lengths", 25), ("lengths", -3)],
                ids=["label200", "label-1", "length>L", "length<0"])
def corrupt(request: pytest.FixtureRequest, small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("r3corrupt") / "ds"
    shutil.copytree(small, d)
    name, value = request.param
    _poke(d, 2, name, 17, value)  # global row 300 + 17 = 317
    return d


_BAD_GLOBAL = 317


def _assert_names_row(exc: BaseException, directory: Path) -> None:
    text = str(exc)
    assert isinstance(exc, FormatError), type(exc)
    assert "shard-00002.h5" in text and "row 17" in text, text
    assert f"python -m convert verify {directory}" in text and "--resume" in text, text
    assert "\n" not in text


def test_corrupt_value_refused_by_every_path(corrupt: Path) -> None:
    ds = ShardDataset(corrupt)
    batch = np.array([5, 301, _BAD_GLOBAL, 640], dtype=np.int64)
    with pytest.raises(FormatError) as e:
        ds[_BAD_GLOBAL]
    _assert_names_row(e.value, corrupt)
    assert ds[_BAD_GLOBAL - 1]["labels"] in range(5)  # its neighbours still read
    for span, kernel in ((True, True), (True, False), (False, False)):
        ds.gather.span, ds.gather.kernel = span, kernel
        with pytest.raises(FormatError) as e:
            ds.__getitems__(batch)
        _assert_names_row(e.value, corrupt)
        ok = ds.__getitems__(np.array([5, 301, 640]))
        assert ok["labels"].shape == (3,)
    ds.gather.span = ds.gather.kernel = True
    sub = ds.select(np.arange(290, 330))
    with pytest.raises(FormatError):
        sub.__getitems__(np.arange(40))
    with pytest.raises(FormatError) as e:
        list(ReadLoader(ds, ShuffleBatchSampler(len(ds), 64, seed=1), num_workers=0))
    _assert_names_row(e.value, corrupt)
    with pytest.raises(FormatError) as e:
        list(IterableShardDataset(corrupt, batch_size=32))
    _assert_names_row(e.value, corrupt)
    with pytest.raises(FormatError) as e:
        list(ds.iter_chunk_shuffled(seed=0, batch_size=32))
    _assert_names_row(e.value, corrupt)
    with pytest.raises(FormatError) as e:  # what samplers count (BalancedSampler, class weights)
        ds.labels, ds.lengths
    _assert_names_row(e.value, corrupt)


@pytest.mark.slow
def test_corrupt_label_advice_repairs(tmp_path: Path) -> None:
    """The commands the error names work: verify finds the shard, --resume re-converts it."""
    from convert.cli import main as convert_main

    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=40, classes=3)
    out = tmp_path / "ds"
    convert(ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), reads_per_shard=50, progress=False))
    _poke(out, 1, "labels", 3, 200)
    with pytest.raises(FormatError) as e:
        ShardDataset(out).__getitems__(np.arange(40, 60))
    assert f"python -m convert verify {out}" in str(e.value)
    assert convert_main(["verify", str(out)]) != 0
    assert convert_main([str(inp), "--out", str(out), "--resume"]) == 0
    ShardDataset(out).__getitems__(np.arange(40, 60))


# -- 3. one descriptor budget per process ------------------------------------------------------

_FD_CHILD = r"""
import json, resource, sys
import numpy as np
from loaders import ShardDataset

limit, ids_file, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
ids_all = np.load(ids_file)
dss = [ShardDataset(p) for p in paths]
rng = np.random.default_rng(0)
checked = 0
for rnd in range(3):
    for ds in dss:
        idx = rng.permutation(len(ds))[:200]
        b = ds.__getitems__(idx)
        assert np.array_equal(b["labels"], ds.labels[idx].astype(np.int64))
        assert np.array_equal(b["lengths"], ds.lengths[idx])
        assert np.array_equal(b["input_ids"], ids_all[idx])
        k = int(idx[0])
        assert np.array_equal(ds[k]["input_ids"], ids_all[k].astype(np.int64))
        assert ds.subset(per_class=3, seed=rnd).__getitems__(np.arange(6))["labels"].shape == (6,)
        checked += idx.size
print(json.dumps({"checked": checked}))
"""


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("r3many")
    built = build_dataset(base / "ds0", (6,) * 64, num_classes=5, max_length=16, seed=5)
    np.save(base / "ids.npy", built.arrays["input_ids"])
    for k in range(1, 5):
        shutil.copytree(base / "ds0", base / f"ds{k}")
    return base, base / "ids.npy"


@pytest.mark.slow
@pytest.mark.parametrize("limit,copies", [(320, 5), (64, 2)], ids=["5x64-shards-at-320", "2x64-shards-at-64"])
def test_datasets_beyond_descriptor_limit_read_correctly(many: tuple[Path, Path], limit: int, copies: int) -> None:
    base, ids = many
    paths = [str(base / f"ds{k}") for k in range(copies)]
    result = _run_child(_FD_CHILD, str(limit), str(ids), *paths, timeout=120)
    assert result == {"checked": 3 * copies * 200}


# -- 4. manifest row counts against the shards -------------------------------------------------

def _lower_rows(directory: Path, shard: int) -> None:
    path = directory / "manifest.json"
    m = json.loads(path.read_text())
    m["shards"][shard]["num_rows"] -= 1
    m["totals"]["num_rows"] -= 1
    path.write_text(json.dumps(m))


def test_lowered_num_rows_refused_at_open(tmp_path: Path) -> None:
    inp, mapping = write_reads(tmp_path / "in" / "r.fa", n_per_class=40, classes=3)
    out = tmp_path / "ds"
    opts = dict(inputs=[str(inp)], out=str(out), mapping=str(mapping), reads_per_shard=50, progress=False)
    convert(ConvertOptions(**opts))
    _lower_rows(out, 1)
    with pytest.raises(FormatError) as e:
        ShardDataset(out)
    text = str(e.value)
    assert "manifest.json" in text and "119" in text and "120" in text, text
    assert "--overwrite" in text and "--mapping" in text, text
    convert(ConvertOptions(**opts, overwrite=True))  # the advised repair
    assert len(ShardDataset(out)) == 120


def test_lowered_num_rows_without_source_counts(small: Path, tmp_path: Path) -> None:
    """A manifest without the converter's record counts: refused where the shard is first read."""
    d = tmp_path / "ds"
    shutil.copytree(small, d)
    _lower_rows(d, 2)
    ds = ShardDataset(d)
    for call in (lambda: ds.subset(per_class=1000), lambda: ds.subset(), lambda: ds.class_counts,
                 lambda: ds.__getitems__(np.arange(290, 320)), lambda: ds[310]):
        with pytest.raises(FormatError) as e:
            call()
        assert "shard-00002.h5" in str(e.value) and "200" in str(e.value) and "199" in str(e.value), str(e.value)
