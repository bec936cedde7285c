"""readshard converter: labeled FASTA/FASTQ -> tokenized, self-describing HDF5 shards.

The pipeline's names are imported on first use (PEP 562): ``train`` imports the option
table, YAML loader and tokenizers from here without paying for the pipeline (numba, h5py).
The format itself is the ``shards`` package.
"""

from typing import Any

from shards import FORMAT_VERSION, FormatError

__all__ = ["FORMAT_VERSION", "FormatError", "ConvertError", "BadRecordError", "ConvertOptions", "convert"]

_PIPELINE = ("ConvertError", "BadRecordError", "ConvertOptions", "convert")


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'convert' has no attribute {name!r}")
