"""readshard converter: labeled FASTA/FASTQ -> tokenized, self-describing HDF5 shards."""

from .format import FORMAT_VERSION, FormatError
from .pipeline import BadRecordError, ConvertError, ConvertOptions, convert

__all__ = ["FORMAT_VERSION", "FormatError", "ConvertError", "BadRecordError", "ConvertOptions", "convert"]
