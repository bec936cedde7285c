"""The bench harness (``readshard_bench``, in the source checkout): robust to fast competitors and
to missing extras, and its sample settings and unit profile agree with the converter.

No timing assertions (speed targets are checked by the benchmark itself, not by tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from readshard_bench.competitors.fasta import bench_pyfaidx, bench_pyfastx
from readshard_bench.data import sample_convert_fields
from conftest import REPO


def _tiny_fasta(path: Path, n: int = 40) -> Path:
    """``n`` short reads, far fewer than one bench step (256 reads) asks for."""
    bases = "ACGT"
    with open(path, "w") as f:
        for i in range(n):
            seq = "".join(bases[(i * 7 + k * 3) % 4] for k in range(120))
            f.write(f">read{i}/1\n{seq}\n")
    return path


@pytest.mark.parametrize("bench", [bench_pyfastx, bench_pyfaidx], ids=["pyfastx", "pyfaidx"])
def test_on_the_fly_competitor_never_runs_out_of_reads(tmp_path: Path, bench) -> None:
    if bench is bench_pyfaidx:
        pytest.importorskip("pyfaidx", reason="the bench extra (pip install .[bench]) is not installed")
    fasta = _tiny_fasta(tmp_path / "reads.fa")
    m = bench(fasta, tmp_path / "work", 32, 0.2)
    # one step serves 256 reads from a 40-read file: the order must wrap into the next epoch
    assert m.samples >= 256 and m.extra["index_build_s"] >= 0


def test_embedded_sample_settings_match_the_make_convert_config(tmp_path: Path) -> None:
    from convert.cli import load_config

    assert sample_convert_fields(tmp_path) == load_config(str(REPO / "configs" / "convert_sample.yaml"))


def test_unit_profile_steps_add_up(tmp_path: Path) -> None:
    """The unit profile's steps run on real (small) units and leave only a small rest."""
    from sample.simulate import simulate
    from readshard_bench.unit_profile import unit_steps

    simulate(tmp_path / "reads", fragments_per_species=100, seed=0, progress=False)
    steps = unit_steps(tmp_path / "reads" / "train.fa", tmp_path / "reads" / "mapping.tsv", tmp_path / "stg",
                       repeats=1, per_unit=1000)
    assert steps["units"] >= 3
    assert all(steps[k] > 0 for k in ("read", "parse", "encode", "write", "unit"))
    assert steps["unit"] >= steps["encode"]
