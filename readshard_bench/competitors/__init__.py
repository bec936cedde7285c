"""The loader bench's competitors, one module per family.

* :mod:`.readshard`: ``ShardDataset`` per item and batched, the compressed layout's chunk
  shuffle, and ``ReadLoader`` with 2 workers.
* :mod:`.numpy_limit`: plain ``np.memmap`` fancy indexing on ``.npy`` copies (the limit).
* :mod:`.hf_datasets`: a Hugging Face ``datasets`` Arrow dataset (the ``bench`` extra).
* :mod:`.fasta`: random access into the FASTA and tokenizing on the fly, with ``pyfastx``
  (a core dependency) and ``pyfaidx`` (the ``bench`` extra).

A competitor whose package is not installed is skipped with one line saying what to install.
"""

from __future__ import annotations

import importlib.util

__all__ = ["COMPETITORS", "REQUIRES", "missing_requirement"]

# Order of the table and of ``samples_per_s`` in the JSON.
COMPETITORS = (
    "readshard",
    "readshard_batched",
    "readshard_compressed",
    "readshard_dataloader_2_workers",
    "numpy_memmap_limit",
    "hf_datasets",
    "pyfastx_on_the_fly",
    "pyfaidx_on_the_fly",
)
# Competitor -> the optional package it needs (installed by ``pip install 'readshard[bench]'``).
REQUIRES = {"hf_datasets": "datasets", "pyfaidx_on_the_fly": "pyfaidx"}


def missing_requirement(name: str) -> str | None:
    """Why competitor ``name`` cannot run here (its package is not importable), else None."""
    module = REQUIRES.get(name)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return f"{module} is not installed (pip install 'readshard[bench]' or make bench)"
