"""readshard's on-disk format: the package at the bottom (it imports no other readshard package).

* :mod:`shards.spec`: names, dtypes, the dataset table, the int16 ceiling, the FormatError family;
* :mod:`shards.manifest`: build / read / validate a manifest, check_compatible;
* :mod:`shards.integrity`: the one rule deciding whether a shard file is intact;
* :mod:`shards.writer`: shard and manifest writer (atomic, never through a link, manifest last);
* :mod:`shards.reader`: :class:`~shards.reader.ShardReader`, one column reader per layout.

The public names of all five are importable from here (``import shards as fmt``); importing
it costs numpy only (h5py is imported when an HDF5 file is opened).
"""

from .integrity import ShardState, check_shard, file_identity, file_sha256
from .manifest import build_manifest, check_compatible, describe_tokenizer, read_manifest, records_before, validate_manifest
from .reader import ShardReader, read_shard_attrs, shard_layout_problems
from .spec import (
    CHUNK_ROWS,
    COMPRESSIONS,
    DATASET_DTYPES,
    DATASET_ID_BYTES,
    FORMAT_NAME,
    FORMAT_VERSION,
    LAYOUTS,
    MANIFEST_NAME,
    MAX_LENGTH_LIMIT,
    OPTIONAL_VECTORS,
    QUARANTINE_NAME,
    REPAIR_ADVICE,
    REPORT_NAME,
    ROW_VECTORS,
    CorruptRowError,
    DatasetChangedError,
    FormatError,
    build_class_index,
    check_shard_file,
    dataset_shape,
    first_line,
    new_dataset_id,
    shard_index_from_name,
    shard_name,
)
from .writer import create_file, fsync_file, write_json_atomic, write_manifest, write_shard

__all__ = [
    "CHUNK_ROWS", "COMPRESSIONS", "DATASET_DTYPES", "DATASET_ID_BYTES", "FORMAT_NAME", "FORMAT_VERSION",
    "LAYOUTS", "MANIFEST_NAME", "MAX_LENGTH_LIMIT", "OPTIONAL_VECTORS", "QUARANTINE_NAME", "REPAIR_ADVICE",
    "REPORT_NAME", "ROW_VECTORS", "CorruptRowError", "DatasetChangedError", "FormatError", "ShardReader",
    "ShardState", "build_class_index", "build_manifest", "check_compatible", "check_shard", "check_shard_file",
    "create_file", "dataset_shape", "describe_tokenizer", "file_identity", "file_sha256", "first_line",
    "fsync_file", "new_dataset_id", "read_manifest", "read_shard_attrs", "records_before", "shard_index_from_name",
    "shard_layout_problems", "shard_name", "validate_manifest", "write_json_atomic", "write_manifest",
    "write_shard",
]
