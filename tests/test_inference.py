"""``train.inference`` pieces without a model: class lookup, mate pairing, header parsing, calibration checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shards import FormatError
from convert.fastx import iter_units
from convert.tokenizers import load_tokenizer
from train.inference import (ClassTable, _parse_unit, adjacent_fragments, pair_log_probs, read_calibration)


def test_labels_of_unknown_class_ids() -> None:
    t = ClassTable(class_ids=np.array([7, 3, 1000000], dtype=np.int64), tax_ids=np.zeros(3, dtype=np.int64),
                   names=["a", "b", "c"])
    assert t.labels_of(np.array([3, 7, 5, 1000000, -1])).tolist() == [1, 0, -1, 2, -1]


def test_adjacent_mates_are_paired_without_overlap() -> None:
    h = np.array([1, 1, 1, 2, 2, 3, 4, 4], dtype=np.uint64)
    mate = np.array([1, 2, 2, 1, 2, 1, 2, 1])
    # (0,1) pair; 2 is a second /2 alone; (3,4) pair; 5 alone; 6,7 share a name but are /2 then /1
    assert adjacent_fragments(mate, h, 10).tolist() == [10, 10, 12, 13, 13, 15, 16, 17]
    # force: any adjacent reads sharing a name, left to right, each read in one pair at most
    assert adjacent_fragments(np.zeros(4), np.array([5, 5, 5, 5], dtype=np.uint64), 0, force=True).tolist() == [0, 0, 2, 2]


def test_pair_log_probs_in_order_of_first_read() -> None:
    lp = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]], dtype=np.float32))
    frag_lp, inv = pair_log_probs(lp, np.array([9, 4, 9, 4]))
    assert inv.tolist() == [0, 1, 0, 1]
    p = np.exp(frag_lp)
    assert np.allclose(p[0], np.array([0.54, 0.04]) / 0.58) and np.allclose(p[1], [0.2, 0.8])


def test_any_header_gives_read_id_and_mate(tmp_path: Path) -> None:
    fa = tmp_path / "h.fq"
    recs = ["lbl|12|34|150|frag7/2 comment", "SRR1.5/1", "SRR1.5/2", "M0:1:FC 1:N:0:ACGT", "M0:1:FC 2:N:0:ACGT",
            "plain", "x/123"]
    fa.write_text("".join(f"@{h}\nACGTacgtNRYA\n+\n{'I' * 12}\n" for h in recs) + "@empty\n\n+\n\n")
    (unit,) = list(iter_units(fa, 0, 100))
    b = _parse_unit(unit, load_tokenizer("char"), 16, 0)
    assert b.read_ids == ["frag7/2", "SRR1.5/1", "SRR1.5/2", "M0:1:FC", "M0:1:FC", "plain", "x/123"]
    assert b.mate.tolist() == [2, 1, 2, 1, 2, 0, 0] and b.class_id.tolist() == [12] + [-1] * 6
    assert b.name_hash[1] == b.name_hash[2] and b.name_hash[3] == b.name_hash[4] and b.name_hash[0] != b.name_hash[1]
    assert b.record.tolist() == list(range(7)) and b.skipped == {"empty_sequence": 1}
    assert (b.lengths == 12).all()  # lower case and IUPAC read as the converter reads them (N)


@pytest.mark.parametrize("text", ['{"temperature": 0}', '{"temperature": true}', '{"temperature": NaN}', "[1.0]",
                                  '{"temperature": 1.0, "threshold": 1.5}', '{"temperature": 1.0, "pair_threshold": "x"}',
                                  "not json"])
def test_bad_calibration_names_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "calibration.json").write_text(text)
    with pytest.raises(FormatError, match="calibration.json"):
        read_calibration(tmp_path)


def test_calibration_absent_or_good(tmp_path: Path) -> None:
    assert read_calibration(tmp_path) == {}
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": 1.5, "threshold": 0.9, "other": [1]}))
    assert read_calibration(tmp_path)["threshold"] == 0.9
