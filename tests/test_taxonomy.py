"""train.taxonomy on tiny trees written in the NCBI .dmp format, and on the shipped excerpts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train.taxonomy import TaxonomyError, load_taxonomy, rank_agreement

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "taxonomy"

# root 1 -> Bacteria 2 (superkingdom) -> phylum 10 -> class 20 -> order 30 -> family 40
#   family 40 -> genus 50 -> species 501, 502;  family 40 -> genus 60 -> species 601
#   (order 30 -> family 41 -> genus 70 -> species 701: another family)
# root 1 -> Archaea 3 (renamed rank "domain") -> phylum 11 -> species 901 (no ranks between)
NODES = [(1, 1, "no rank"), (2, 1, "superkingdom"), (3, 1, "domain"), (10, 2, "phylum"), (11, 3, "phylum"),
         (20, 10, "class"), (30, 20, "order"), (40, 30, "family"), (41, 30, "family"), (50, 40, "genus"),
         (60, 40, "genus"), (70, 41, "genus"), (501, 50, "species"), (502, 50, "species"),
         (601, 60, "species"), (701, 70, "species"), (901, 11, "species"), (5011, 501, "strain")]


def write_tree(d: Path, merged: dict[int, int] | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "nodes.dmp").write_text("".join(f"{t}\t|\t{p}\t|\t{r}\t|\t\t|\t0\t|\n" for t, p, r in NODES))
    names = "".join(f"{t}\t|\tname {t}\t|\t\t|\tscientific name\t|\n{t}\t|\talias {t}\t|\t\t|\tsynonym\t|\n"
                    for t, _, _ in NODES)
    (d / "names.dmp").write_text(names)
    if merged:
        (d / "merged.dmp").write_text("".join(f"{a}\t|\t{b}\t|\n" for a, b in merged.items()))
    return d


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return load_taxonomy(write_tree(tmp_path_factory.mktemp("tax"), merged={999: 502}))


def test_lineage_and_names(tree) -> None:  # noqa: ANN001
    assert tree.lineage(501) == [501, 50, 40, 30, 20, 10, 2]
    assert tree.lineage(5011) == [501, 50, 40, 30, 20, 10, 2]  # a strain rolls up to its species
    assert tree.lineage(901) == [901, -1, -1, -1, -1, 11, 3]  # "domain" counts as superkingdom
    assert tree.lineage(999) == tree.lineage(502)  # merged id
    assert tree.lineage(12345) == [-1] * 7
    assert tree.name(50) == "name 50" and tree.name(4) == "4"


# (true, called, lowest agreeing rank for a wrong call, or None when right)
CALLS = [(501, 501, None), (501, 502, "genus"), (501, 601, "family"), (501, 701, "order"),
         (501, 901, "none"), (901, 501, "none"), (601, 5011, "family")]


def test_rank_agreement(tree) -> None:  # noqa: ANN001
    t = np.array([c[0] for c in CALLS])
    p = np.array([c[1] for c in CALLS])
    got = rank_agreement(t, p, tree)
    assert got["wrong_calls"] == 6
    expect = {"species": 0, "genus": 1, "family": 2, "order": 1, "class": 0, "phylum": 0, "superkingdom": 0, "none": 2}
    assert got["first_agreement"] == expect
    # per rank: a read counts where its true lineage has the rank (901 has no genus..class)
    assert got["reads"]["genus"] == 6 and got["reads"]["phylum"] == 7
    assert got["correct"]["species"] == 1 and got["correct"]["genus"] == 2
    assert got["correct"]["family"] == 4 and got["correct"]["order"] == 5
    assert got["correct"]["superkingdom"] == 5 and got["accuracy"]["superkingdom"] == 5 / 7
    # plain per-read reference for every rank
    for i, rank in enumerate(got["ranks"]):
        rows = [(tree.lineage(a)[i], tree.lineage(b)[i]) for a, b in zip(t, p)]
        present = [x for x in rows if x[0] != -1]
        assert got["reads"][rank] == len(present)
        assert got["correct"][rank] == sum(a == b for a, b in present)


def test_unknown_tax_ids_are_reported(tree) -> None:  # noqa: ANN001
    got = rank_agreement(np.array([501, 4242, 502]), np.array([501, 501, 4343]), tree)
    assert got["unknown_tax_ids"] == [4242, 4343] and got["reads"]["species"] == 2
    # a read of an unplaced tax id is left out; a call of one agrees nowhere
    assert got["reads_without_lineage"] == 1 and got["wrong_calls"] == 1 and got["first_agreement"]["none"] == 1


def test_bad_files_say_which(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match="nodes.dmp.*taxdump"):
        load_taxonomy(tmp_path)
    d = write_tree(tmp_path / "t")
    (d / "nodes.dmp").write_text("1\t|\t1\t|\tno rank\t|\nabc\t|\t1\t|\tspecies\t|\n")
    with pytest.raises(TaxonomyError, match="not an integer"):
        load_taxonomy(d)
    (d / "nodes.dmp").write_text("1 1 root\n")
    with pytest.raises(TaxonomyError, match=r"nodes.dmp, line 1"):
        load_taxonomy(d)


@pytest.mark.skipif(not (SHARED / "ganon_build-custom" / "nodes.dmp").is_file(), reason="shared taxonomy excerpt absent")
def test_real_ncbi_excerpt() -> None:
    tax = load_taxonomy(SHARED / "ganon_build-custom")
    species = sorted(t for t, r in tax.rank.items() if r == "species")
    assert len(species) >= 2 and all(tax.lineage(s)[0] == s for s in species)
    assert all(tax.lineage(s)[-1] != -1 for s in species)  # every species reaches its domain
    got = rank_agreement(np.array(species), np.array(species[::-1]), tax)
    assert got["accuracy"]["superkingdom"] is not None and got["unknown_tax_ids"] == []
