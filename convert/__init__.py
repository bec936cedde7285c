"""readshard converter: labeled FASTA/FASTQ -> tokenized, self-describing HDF5 shards.

The pipeline's names are imported on first use (PEP 562): readers import
``convert.format`` alone, and ``import loaders`` must not pay for the converter.
"""

from typing import Any

from .format import FORMAT_VERSION, FormatError

__all__ = ["FORMAT_VERSION", "FormatError", "ConvertError", "BadRecordError", "ConvertOptions", "convert"]

_PIPELINE = ("ConvertError", "BadRecordError", "ConvertOptions", "convert")


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'convert' has no attribute {name!r}")
