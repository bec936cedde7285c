"""``python -m train evaluate`` (train.evaluate.main, in-process) on a real tiny trained run (conftest's
``tiny_run``, shared with the predict tests), and what the end of a training run writes:
RUN/calibration.json and RUN/eval/val/."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import make_reads
from train.calibration import read_calibration
from train.evaluate import EVAL_FILES, main

TAX_IDS = [5000, 5001, 5002, 5003]  # conftest's tiny_run: class c has tax id 5000 + c
VAL_READS = 100  # conftest.TINY_RUN_SPLIT: 4 classes of 25 val reads


def png_images(html_path: Path) -> list[bytes]:
    """Decoded ``data:image/png`` images of the page; fails on any external src/href."""
    srcs: list[str] = []

    class P(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for k, v in attrs:
                if k in ("src", "href"):
                    assert v and v.startswith("data:"), f"external reference {v!r} in {html_path}"
                    if tag == "img":
                        srcs.append(v)

    P().feed(html_path.read_text())
    return [base64.b64decode(s.split(",", 1)[1], validate=True) for s in srcs]


def test_training_run_writes_calibration_and_val_evaluation(tiny_run: dict) -> None:
    run_dir = tiny_run["run"]
    cal = read_calibration(run_dir / "calibration.json")  # schema-checked
    assert cal is not None and cal["num_reads"] == VAL_READS and 0.25 <= cal["temperature"] <= 10
    assert str(tiny_run["val"]) in cal["fitted_on"] and cal["ece_bins"] == 15
    assert tiny_run["result"]["calibration"]["temperature"] == cal["temperature"]
    ev = run_dir / "eval" / "val"
    assert sorted(p.name for p in ev.iterdir()) == sorted(EVAL_FILES)
    m = json.loads((ev / "metrics.json").read_text())
    assert m["counts"]["reads"] == m["per_read"]["count"] == VAL_READS and m["counts"]["unknown_class"] == 0
    assert m["per_read"]["at_threshold"]["threshold"] == cal["threshold"]
    # the training loop's own figure and the evaluation agree (same logits)
    assert m["per_read"]["accuracy"] == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["val_accuracy"])
    assert len(png_images(ev / "report.html")) == 4


@pytest.fixture(scope="module")
def taxonomy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """species 5000, 5001 in genus 60; 5002 in genus 61 (same family 70); 5003 in family 71."""
    d = tmp_path_factory.mktemp("tax")
    nodes = [(1, 1, "no rank"), (2, 1, "superkingdom"), (80, 2, "order"), (70, 80, "family"), (71, 80, "family"),
             (60, 70, "genus"), (61, 70, "genus"), (62, 71, "genus"), (5000, 60, "species"),
             (5001, 60, "species"), (5002, 61, "species"), (5003, 62, "species")]
    (d / "nodes.dmp").write_text("".join(f"{t}\t|\t{p}\t|\t{r}\t|\n" for t, p, r in nodes))
    (d / "names.dmp").write_text("".join(f"{t}\t|\tn{t}\t|\t\t|\tscientific name\t|\n" for t, _, _ in nodes))
    return d


def test_evaluate_dataset_with_taxonomy(tiny_run: dict, taxonomy_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ev"
    assert main([str(tiny_run["run"]), str(tiny_run["val"]), "--taxonomy", str(taxonomy_dir), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    assert "report.html" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    r = m["per_read"]
    # counts reconcile
    assert r["count"] == VAL_READS == r["at_threshold"]["classified"] + r["at_threshold"]["unclassified"]
    assert sum(row["support"] for row in m["per_class"]) == r["known_class"] == VAL_READS
    assert m["threshold_source"].startswith("RUN/calibration.json")
    assert m["temperature"] == read_calibration(tiny_run["run"] / "calibration.json")["temperature"]
    tax = m["taxonomy"]["per_read"]
    assert tax["reads"]["species"] == VAL_READS and tax["accuracy"]["species"] == pytest.approx(r["accuracy"])
    assert tax["accuracy"]["superkingdom"] == 1.0 and sum(tax["first_agreement"].values()) == tax["wrong_calls"]
    assert tax["first_agreement"]["species"] == 0
    rows = (out / "per_class.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["label", "class_id", "tax_id", "name"] and len(rows) == 5
    images = png_images(out / "report.html")
    assert len(images) == 4
    from PIL import Image

    for data in images:
        assert Image.open(io.BytesIO(data)).format == "PNG"
    assert "Taxonomy" in (out / "report.html").read_text()


def test_fasta_with_unknown_classes_and_pairs(tiny_run: dict, tmp_path: Path) -> None:
    """The val FASTA gives the dataset's per-read figures; reads of a class the run does not know
    count as "should be unclassified"; adjacent /1 /2 mates are scored as pairs."""
    reads, labels = make_reads(5, 20, seed=9)  # class 4 (id 104) is not one of the run's 4 classes
    order = np.argsort(labels, kind="stable")
    fa = tmp_path / "mixed.fa"
    with open(fa, "w") as f:
        for k in range(0, len(order), 2):  # mates: two reads of the same class
            a, b = order[k], order[k + 1]
            f.write(f">lbl|{100 + labels[a]}|{5000 + labels[a]}|150|p{k}/1\n{reads[a]}\n")
            f.write(f">lbl|{100 + labels[b]}|{5000 + labels[b]}|150|p{k}/2\n{reads[b]}\n")
    out = tmp_path / "ev"
    assert main([str(tiny_run["run"]), str(fa), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["counts"]["reads"] == 100 and m["counts"]["unknown_class"] == 20 and m["counts"]["fragments"] == 50
    assert m["per_pair"]["fragments_with_mates"] == 50 and m["per_pair"]["unknown_class"] == 10
    unk = m["per_read"]["unknown"]
    assert unk["auroc_known_vs_unknown"] is not None and 0 <= unk["rejection_rate_at_threshold"] <= 1

    ds_out, fa_out = tmp_path / "ds", tmp_path / "fa"
    assert main([str(tiny_run["run"]), str(tiny_run["val"]), "--out", str(ds_out), "--no-progress"]) == 0
    assert main([str(tiny_run["run"]), str(tiny_run["val_fa"]), "--out", str(fa_out), "--no-progress"]) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (ds_out, fa_out))
    assert a["per_read"]["accuracy"] == b["per_read"]["accuracy"]
    assert a["per_read"]["at_threshold"] == b["per_read"]["at_threshold"]


def test_calibrate_flag_writes_run_calibration(tiny_run: dict, tmp_path: Path) -> None:
    run_copy = tmp_path / "run"
    run_copy.mkdir()
    for name in ("config.json", "checkpoint.pt"):
        (run_copy / name).write_bytes((tiny_run["run"] / name).read_bytes())
    assert main([str(run_copy), str(tiny_run["val"]), "--calibrate", "--target-precision", "0.95",
                 "--no-progress"]) == 0
    cal = read_calibration(run_copy / "calibration.json")
    assert cal["target_precision"] == 0.95 and cal["num_reads"] == VAL_READS
    assert (run_copy / "eval" / "val" / "report.html").is_file()  # the default --out: RUN/eval/<DATA name>


def test_user_errors_exit_2(tiny_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    unlabelled = tmp_path / "sample.fa"
    unlabelled.write_text(">read1\nACGTACGTACGTACGTACGTACGTACGT\n>read2\nTTTTACGTACGTACGTACGTACGTAAAA\n")
    assert main([str(tiny_run["run"]), str(unlabelled), "--out", str(tmp_path / "o1"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no class ids" in err and "python -m train predict" in err and "Traceback" not in err
    assert main([str(tiny_run["run"]), str(tiny_run["val"]), "--taxonomy", str(tmp_path), "--no-progress"]) == 2
    assert "nodes.dmp" in capsys.readouterr().err
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    assert main([str(tiny_run["run"]), str(tiny_run["val"]), "--out", str(tmp_path / "link"), "--no-progress"]) == 2
    assert "link" in capsys.readouterr().err and not any(target.iterdir())
    assert main([str(tiny_run["run"]), str(tiny_run["val"]), "--target-precision", "1.5"]) == 2


def test_overwrite_clears_only_what_evaluate_wrote(tmp_path: Path) -> None:
    from train.loop import _clear_previous_run

    out = tmp_path / "run"
    ev = out / "eval" / "val"
    ev.mkdir(parents=True)
    for name in EVAL_FILES:
        (ev / name).write_text("old")
    (out / "calibration.json").write_text("{}")
    _clear_previous_run(out)
    assert not (out / "eval").exists() and not (out / "calibration.json").exists()
    ev.mkdir(parents=True)
    (ev / "metrics.json").write_text("old")
    (ev / "notes.txt").write_text("mine")
    _clear_previous_run(out)
    assert sorted(p.name for p in ev.iterdir()) == ["notes.txt"]
    # a link at eval/ is never followed
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "val").mkdir(parents=True)
    (elsewhere / "val" / "metrics.json").write_text("theirs")
    (ev / "notes.txt").unlink()
    ev.rmdir()
    (out / "eval").rmdir()
    (out / "eval").symlink_to(elsewhere)
    _clear_previous_run(out)
    assert (elsewhere / "val" / "metrics.json").read_text() == "theirs"
