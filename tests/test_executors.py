"""convert.executors: which executor runs the units, order, errors and the bounded queue."""

from __future__ import annotations

import threading
import time

import pytest

from convert.executors import choose_parallel, run_processes, run_serial, run_threads


@pytest.mark.parametrize(
    "requested, jobs, gil_free, expected",
    [
        ("auto", 1, True, "serial"),
        ("threads", 1, True, "serial"),
        ("processes", 1, False, "serial"),
        ("auto", 2, True, "threads"),
        ("auto", 2, False, "processes"),  # a custom --header-regex, HF tokenizer, compressed layout
        ("threads", 4, False, "threads"),
        ("processes", 2, True, "processes"),
    ],
)
def test_choose_parallel(requested: str, jobs: int, gil_free: bool, expected: str) -> None:
    assert choose_parallel(requested, jobs, gil_free) == expected


def test_choose_parallel_refuses_unknown() -> None:
    with pytest.raises(ValueError, match="auto, threads, processes"):
        choose_parallel("fork", 2, True)


def _square(unit: int, index: int, scale: int) -> dict:
    time.sleep(0.002 * (unit % 3))  # finish out of order
    return {"index": index, "value": unit * unit * scale}


@pytest.mark.parametrize("runner", ["serial", "threads", "processes"])
def test_records_come_back_in_task_order(runner: str) -> None:
    tasks = [(u, i) for i, u in enumerate(range(20))]
    if runner == "serial":
        out = list(run_serial(_square, tasks, 2))
    elif runner == "threads":
        out = list(run_threads(_square, tasks, 3, 2))
    else:
        out = list(run_processes(_square, tasks, 2, 2))
    assert [r["index"] for r in out] == list(range(20))
    assert [r["value"] for r in out] == [2 * u * u for u in range(20)]


def test_threads_bound_the_queue_and_run_in_parallel() -> None:
    lock = threading.Lock()
    state = {"submitted": 0, "running": 0, "most_running": 0}
    gate = threading.Barrier(2, timeout=10)  # two units must be running at once to pass

    def tasks():
        for i in range(12):
            with lock:
                state["submitted"] += 1
            yield i, i

    def unit(u: int, index: int) -> dict:
        with lock:
            state["running"] += 1
            state["most_running"] = max(state["most_running"], state["running"])
        if index < 2:
            gate.wait()
        with lock:
            state["running"] -= 1
        return {"index": index}

    seen = 0
    for rec in run_threads(unit, tasks(), 2):
        # Never more than 2 * jobs units scanned ahead of the one handed back.
        assert state["submitted"] - seen <= 2 * 2 + 1
        assert rec["index"] == seen
        seen += 1
    assert seen == 12 and state["most_running"] == 2


def test_threads_raise_the_first_error_and_cancel_the_rest() -> None:
    started: list[int] = []

    def unit(u: int, index: int) -> dict:
        started.append(index)
        if index == 1:
            raise RuntimeError("bad record in unit 1")
        time.sleep(0.01)
        return {"index": index}

    got = []
    with pytest.raises(RuntimeError, match="unit 1"):
        for rec in run_threads(unit, ((i, i) for i in range(50)), 2):
            got.append(rec["index"])
    assert got == [0]
    assert len(started) < 50  # queued units were cancelled, not run


def test_converter_refuses_unknown_parallel_before_writing(reads, tmp_path) -> None:
    from convert.pipeline import ConvertError, ConvertOptions, convert

    inp, mapping = reads
    with pytest.raises(ConvertError, match="--parallel must be one of auto, threads, processes"):
        convert(ConvertOptions(inputs=[str(inp)], out=str(tmp_path / "out"), mapping=str(mapping), parallel="fork",
                               progress=False))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({}, "threads"),
        ({"header_regex": r"lbl\|(?P<class_id>\d+)\|(?P<tax_id>\d*)\|(?P<readlen>\d*)\|(?P<name>[^/\s]+)(?:/(?P<mate>\d+))?"},
         "processes"),  # a custom regex parses in Python: processes
        ({"layout": "compressed"}, "processes"),  # gzip chunks compress under h5py's lock
        ({"tokenizer": "dnabert-6mer"}, "threads"),  # numpy k-mer lookups
        ({"tokenizer": "dnabert-2"}, "threads"),  # the fast BPE
        ({"reads_per_shard": 300}, "processes"),  # units this small are encoded by Hugging Face, per read
    ],
)
def test_auto_picks_threads_only_for_the_gil_free_path(reads, tmp_path, extra: dict, expected: str) -> None:
    from convert.pipeline import ConvertOptions, convert

    inp, mapping = reads
    opts = {"reads_per_shard": 4096, **extra}
    report = convert(ConvertOptions(inputs=[str(inp)], out=str(tmp_path / "out"), mapping=str(mapping), jobs=2,
                                    max_length=64, progress=False, **opts))
    assert report["parallel"] == expected


def _fail_two(unit: int, index: int) -> dict:
    if index == 1:
        time.sleep(0.3)  # fails last in time ...
        raise ValueError("unit 1")
    if index == 2:
        raise ValueError("unit 2")  # ... this one first
    return {"index": index}


@pytest.mark.parametrize("runner", [run_threads, run_processes])
def test_the_error_raised_is_the_first_in_task_order(runner) -> None:
    """--on-bad-record error names the first bad record in input order, whichever fails first in time."""
    with pytest.raises(ValueError, match="unit 1"):
        list(runner(_fail_two, [(i, i) for i in range(4)], 2))


def _first_fails(unit: int, index: int) -> dict:
    if index == 0:
        time.sleep(unit)  # 0: fail at once (the other unit still runs); 0.3: fail after it finished
        raise ValueError("unit 0")
    if unit == 0:
        time.sleep(0.5)
    return {"index": index}


@pytest.mark.parametrize("delay", [0, 0.3])  # joblib's "cancelled" and "executed but not used" cases
def test_processes_stop_early_without_joblib_warnings(delay: float) -> None:
    """An error ends the run with that error alone: no joblib warning about unused or cancelled units."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="unit 0"):
            list(run_processes(_first_fails, [(delay, 0), (delay, 1), (delay, 2), (delay, 3)], 2))
    assert not [w for w in seen if "tasks" in str(w.message)], [str(w.message) for w in seen]
