"""``python -m train predict``: a real tiny run (conftest's ``tiny_run``, trained once per session) classifies
real files: unlabelled headers, FASTA == converted dataset, mate consensus (adjacent and R1/R2), bounded
blocks, reports that reconcile, every architecture, and one-paragraph errors."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _train_helpers import tiny_run_config
from convert.cli import main as convert_main
from train.cli import main as train_main
from train.inference import load_run, pair_log_probs, score_dataset, score_reads
from train.loop import run as train_run

REPO = Path(__file__).resolve().parents[1]
GENOME_SEED, GENOME_LEN, C = 1234, 3000, 4  # the genomes of conftest.make_reads


def _fragments(n: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """Mates of ``n`` fragments (two 150 bp windows 50 bp apart) of the test genomes."""
    genomes = np.random.default_rng(GENOME_SEED).integers(0, 4, size=(C, GENOME_LEN))
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, C, size=n)
    start = rng.integers(0, GENOME_LEN - 400, size=n)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    r1 = [letters[genomes[c, s : s + 150]].tobytes().decode() for c, s in zip(cls, start)]
    r2 = [letters[genomes[c, s + 200 : s + 350]].tobytes().decode() for c, s in zip(cls, start)]
    return r1, r2, cls


def _predictions(out: Path) -> list[dict[str, str]]:
    with gzip.open(out / "predictions.tsv.gz", "rt") as f:
        head, *rows = f.read().splitlines()
    cols = head.split("\t")
    return [dict(zip(cols, r.split("\t"))) for r in rows]


def test_fasta_and_dataset_give_the_same_predictions(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    assert convert_main([str(tiny_run["val_fa"]), "--out", str(ds), "--mapping", str(tiny_run["val_fa"].parent / "mapping.tsv"),
                         "--tokenizer", "dnabert-6mer", "--max-length", "152", "--no-progress"]) == 0
    assert train_main(["predict", str(tiny_run["run"]), str(tiny_run["val_fa"]), "--out", str(tmp_path / "a"),
                       "--no-progress"]) == 0
    assert train_main(["predict", str(tiny_run["run"]), str(ds), "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    a = sorted(_predictions(tmp_path / "a"), key=lambda r: int(r["record"]))
    b = sorted(_predictions(tmp_path / "b"), key=lambda r: int(r["record"]))
    assert len(a) == len(b) == 100
    for x, y in zip(a, b):
        for key in ("record", "fragment", "call", "label", "class_id", "tax_id", "species", "runner_up"):
            assert x[key] == y[key], (key, x, y)
        assert float(x["probability"]) == pytest.approx(float(y["probability"]), rel=1e-5, abs=1e-7)
    assert a[0]["read_id"] == "r0/1" and b[0]["read_id"] == "-"  # the seed format's name/mate; a dataset has none
    # The run learned: the calls match the headers' classes (class id = 100 + label).
    truth = [int(x) - 100 for x in np.asarray([r["class_id"] for r in a])]
    assert np.mean([int(r["label"]) == t for r, t in zip(a, truth)]) > 0.8


def test_unlabelled_interleaved_mates_get_one_call(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    r1, r2, cls = _fragments(40, seed=7)
    fq = tmp_path / "sample.fq.gz"
    with gzip.open(fq, "wt") as f:  # any headers: no labels, Illumina comments after the id
        for i, (a, b) in enumerate(zip(r1, r2)):
            f.write(f"@frag{i}/1 some comment\n{a}\n+\n{'I' * len(a)}\n@frag{i}/2\n{b}\n+\n{'I' * len(b)}\n")
    out = tmp_path / "p"
    assert train_main(["predict", str(tiny_run["run"]), str(fq), "--out", str(out), "--no-progress"]) == 0
    rows = _predictions(out)
    assert len(rows) == 80 and [r["read_id"] for r in rows[:3]] == ["frag0/1", "frag0/2", "frag1/1"]
    for a, b in zip(rows[::2], rows[1::2]):
        assert a["fragment"] == b["fragment"] and a["call"] == b["call"] and a["probability"] == b["probability"]
    assert len({r["fragment"] for r in rows}) == 40
    rep = json.loads((out / "report.json").read_text())
    assert rep["paired_reads"] == 80 and rep["reads_in"] == rep["classified"] + rep["unclassified"] == 80
    assert np.mean([int(r["label"]) == c for r, c in zip(rows[::2], cls) if r["label"] != "-1"]) > 0.8
    off = tmp_path / "off"
    assert train_main(["predict", str(tiny_run["run"]), str(fq), "--out", str(off), "--pairs", "off", "--no-progress"]) == 0
    assert len({r["fragment"] for r in _predictions(off)}) == 80
    assert json.loads((off / "report.json").read_text())["paired_reads"] == 0


def test_pair_consensus_is_the_renormalised_sum(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    r1, r2, _ = _fragments(12, seed=3)
    fa = tmp_path / "r.fa"
    fa.write_text("".join(f">x{i} 1:N:0:ACGT\n{a}\n>x{i} 2:N:0:ACGT\n{b}\n" for i, (a, b) in enumerate(zip(r1, r2))))
    run = load_run(tiny_run["run"], device="cpu")
    (s,) = list(score_reads(run, [fa], progress=False))
    assert (s.fragment[::2] == s.fragment[1::2]).all() and len(np.unique(s.fragment)) == 12  # Illumina 1:/2: mates
    frag_lp, inv = pair_log_probs(s.log_probs, s.fragment)
    ref = s.log_probs[::2].astype(np.float64) + s.log_probs[1::2]
    ref -= np.log(np.exp(ref).sum(axis=1, keepdims=True))  # plain reference: product of mates' probabilities
    assert np.allclose(frag_lp, ref, atol=1e-5) and (inv == np.repeat(np.arange(12), 2)).all()


def test_r1_r2_files_and_small_blocks(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    r1, r2, _ = _fragments(30, seed=11)
    f1, f2 = tmp_path / "s_R1.fa", tmp_path / "s_R2.fa"
    f1.write_text("".join(f">f{i}/1\n{s}\n" for i, s in enumerate(r1)))
    f2.write_text("".join(f">f{i}/2\n{s}\n" for i, s in enumerate(r2)))
    run = load_run(tiny_run["run"], device="cpu")
    whole = list(score_reads(run, [f1, f2], progress=False))
    small = list(score_reads(run, [f1, f2], progress=False, block_size=7))  # mates still meet across blocks
    assert len(small) > 3
    for name in ("record", "source", "fragment"):
        assert (np.concatenate([getattr(s, name) for s in whole]) == np.concatenate([getattr(s, name) for s in small])).all()
    s = whole[0]
    assert (s.source[::2] == 0).all() and (s.source[1::2] == 1).all() and (s.record[::2] == s.record[1::2]).all()
    assert (s.fragment[::2] == s.fragment[1::2]).all()
    assert np.allclose(s.log_probs, np.concatenate([x.log_probs for x in small]), atol=1e-5)
    # Adjacent mates split over blocks of odd size: the last /1 of a block waits for its /2.
    inter = tmp_path / "i.fa"
    inter.write_text("".join(f">f{i}/1\n{a}\n>f{i}/2\n{b}\n" for i, (a, b) in enumerate(zip(r1, r2))))
    frag = np.concatenate([x.fragment for x in score_reads(run, [inter], progress=False, block_size=5)])
    assert (frag[::2] == frag[1::2]).all() and len(np.unique(frag)) == 30


def test_min_confidence_and_reports_reconcile(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    run, fa = str(tiny_run["run"]), str(tiny_run["val_fa"])
    assert train_main(["predict", run, fa, "--out", str(tmp_path / "all"), "--no-progress", "--min-confidence", "0"]) == 0
    probs = np.unique([float(r["probability"]) for r in _predictions(tmp_path / "all")])
    gaps = np.flatnonzero(np.diff(probs) > 1e-6)
    k = gaps[len(gaps) // 2]
    thr = float((probs[k] + probs[k + 1]) / 2)  # a threshold between two calls, far from either
    out = tmp_path / "p"
    assert train_main(["predict", run, fa, "--out", str(out), "--no-progress", "--min-confidence", str(thr)]) == 0
    rows = _predictions(out)
    unc = [r for r in rows if r["call"] == "unclassified"]
    assert 0 < len(unc) < 100
    assert all(float(r["probability"]) < thr and r["label"] == "-1" and r["tax_id"] == "0" for r in unc)
    assert all(float(r["probability"]) >= thr and r["call"] == r["species"] for r in rows if r["call"] != "unclassified")
    rep = json.loads((out / "report.json").read_text())
    assert rep["reads_in"] == rep["classified"] + rep["unclassified"] == len(rows) == 100
    assert rep["unclassified"] == len(unc) and rep["min_confidence_from"] == "--min-confidence"
    tsv = [line.split("\t") for line in (out / "report.tsv").read_text().splitlines()[1:]]
    assert tsv[0][5] == "unclassified" and int(tsv[0][1]) == len(unc)
    assert sum(int(r[1]) for r in tsv) == 100 and sum(int(r[1]) for r in tsv[1:]) == rep["classified"]
    assert abs(sum(float(r[2]) for r in tsv[1:]) - 100) < 0.1
    assert rep["run"]["tokenizer"]["name"] == "dnabert-6mer" and rep["run"]["num_classes"] == C
    # A calibrated threshold is the default min-confidence (same temperature: same probabilities).
    cal = tmp_path / "cal"
    shutil.copytree(tiny_run["run"], cal)
    temp = load_run(tiny_run["run"], device="cpu").temperature
    (cal / "calibration.json").write_text(json.dumps({"temperature": temp, "threshold": thr}))
    assert train_main(["predict", str(cal), fa, "--out", str(tmp_path / "q"), "--no-progress"]) == 0
    rep2 = json.loads((tmp_path / "q" / "report.json").read_text())
    assert rep2["min_confidence_from"] == "calibration.json" and rep2["unclassified"] == rep["unclassified"]


def test_errors_are_one_paragraph(tiny_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, fa = str(tiny_run["run"]), str(tiny_run["val_fa"])

    def fails(*argv: str, expect: str) -> None:
        assert train_main(["predict", *argv]) == 2
        err = capsys.readouterr().err
        assert expect in err and "Traceback" not in err and err.count("\n") == 1, err

    fails(str(tmp_path / "nowhere"), fa, "--out", str(tmp_path / "o"), expect="nowhere")
    norun = tmp_path / "norun"
    norun.mkdir()
    (norun / "config.json").write_text((tiny_run["run"] / "config.json").read_text())
    fails(str(norun), fa, "--out", str(tmp_path / "o"), expect="checkpoint.pt is missing")
    bad = tmp_path / "badcal"
    shutil.copytree(tiny_run["run"], bad)
    (bad / "calibration.json").write_text('{"temperature": -1}')
    fails(str(bad), fa, "--out", str(tmp_path / "o"), expect="calibration.json")
    notfa = tmp_path / "notes.txt"
    notfa.write_text("this is not a sequence file\n")
    fails(run, fa, str(notfa), "--out", str(tmp_path / "o1"), expect="notes.txt")
    assert not (tmp_path / "o1").exists()  # checked before anything is written
    other = tmp_path / "charset"  # another tokenizer's dataset
    assert convert_main([fa, "--out", str(other), "--mapping", str(tiny_run["val_fa"].parent / "mapping.tsv"),
                         "--tokenizer", "char", "--max-length", "152", "--no-progress"]) == 0
    fails(run, str(other), "--out", str(tmp_path / "o2"), expect="tokenizer")
    assert not (tmp_path / "o2").exists()
    # An --out with someone else's files: refused; with --overwrite they stay untouched.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.md").write_text("mine")
    fails(run, fa, "--out", str(busy), expect="notes.md")
    assert train_main(["predict", run, fa, "--out", str(busy), "--overwrite", "--no-progress"]) == 0
    assert (busy / "notes.md").read_text() == "mine" and (busy / "report.json").is_file()
    capsys.readouterr()
    fails(run, fa, "--out", str(busy), expect="--overwrite")
    link = tmp_path / "link"
    link.symlink_to(busy)
    fails(run, fa, "--out", str(link), expect="link")


def test_run_is_self_contained(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    """The checkpoint holds the class table and tokenizer: a run predicts after its training set moved."""
    moved = tmp_path / "run"
    shutil.copytree(tiny_run["run"], moved)
    cfg = json.loads((moved / "config.json").read_text())
    cfg["data"]["train"] = cfg["data"]["val"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(cfg))
    run = load_run(moved, device="cpu")
    assert run.classes.names == [f"species_{c}" for c in range(C)] and list(run.classes.class_ids) == [100, 101, 102, 103]
    assert list(run.classes.tax_ids) == [5000, 5001, 5002, 5003] and run.max_length == 152
    ref = np.concatenate([s.log_probs for s in score_reads(load_run(tiny_run["run"], device="cpu"), [tiny_run["val_fa"]],
                                                           progress=False)])
    got = np.concatenate([s.log_probs for s in score_reads(run, [tiny_run["val_fa"]], progress=False)])
    assert np.array_equal(ref, got)


@pytest.mark.slow
@pytest.mark.parametrize("arch,extra", [("bert", {}), ("dnabert2", {}),
                                        ("llama", {"lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}})])
def test_every_architecture(tiny_run: dict[str, Path], tmp_path: Path, arch: str, extra: dict) -> None:
    """The rebuilt model is the tiny_run one: its accuracy on val equals the run's own evaluation."""
    out = tmp_path / "run"
    result = train_run(tiny_run_config(tiny_run["train"], tiny_run["val"], out, arch=arch, lr=3e-2, **extra))
    run = load_run(out, device="cpu")
    run.temperature = 1.0  # argmax does not depend on it; keep the comparison plain
    blocks = list(score_dataset(run, tiny_run["val"]))
    labels = np.concatenate([s.labels for s in blocks])
    pred = np.concatenate([s.log_probs.argmax(1) for s in blocks])
    assert labels.min() >= 0 and len(labels) == 100
    # A rebuilt body with other weights (a LoRA run's frozen base) would be near chance (0.25).
    assert result["val_accuracy"] > 0.4 and np.mean(pred == labels) == pytest.approx(result["val_accuracy"], abs=0.021)


@pytest.mark.slow
def test_cli_process(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    """The real command: subcommand dispatch, the progress bar on stderr, exit code 0."""
    out = tmp_path / "p"
    proc = subprocess.run([sys.executable, "-m", "train", "predict", str(tiny_run["run"]), str(tiny_run["val_fa"]),
                           "--out", str(out), "--device", "cpu", "--threads", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "read/s" in proc.stderr and "100 reads" in proc.stderr
    assert len(_predictions(out)) == 100
