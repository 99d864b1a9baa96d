"""Parquet schemas of the shard store (manifest, classes, rejects), read and written through fsspec."""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .storage import Store

MANIFEST = "manifest.parquet"
CLASSES = "classes.parquet"
REJECTS = "rejects.parquet"


class TableError(ValueError):
    """A store's Parquet file exists but cannot be read (truncated, overwritten); the message names it."""

MANIFEST_FIELDS = [
    pa.field("key", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("split", pa.string()),
    pa.field("shard", pa.string()),          # relative to the store (--out)
    pa.field("offset", pa.int64()),          # first tar header of the sample
    pa.field("size", pa.int64()),            # first header .. end of the last member's padded data
    pa.field("label", pa.int32()),           # -1 when unlabeled
    pa.field("class_name", pa.string()),
    pa.field("source_path", pa.string()),    # relative to --root
    pa.field("video_id", pa.string()),
    pa.field("num_frames", pa.int32()),
    pa.field("fps", pa.float64()),
    pa.field("source_fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("duration_s", pa.float64()),
    pa.field("codec", pa.string()),
    pa.field("bytes", pa.int64()),           # of the stored stream ({key}.mp4)
    pa.field("sha256", pa.string()),         # of the stored stream
    pa.field("fragment_offsets", pa.list_(pa.int64())),  # byte offset of each fragment (moof) in the stream
    pa.field("fragment_frames", pa.list_(pa.int32())),   # index of each fragment's first frame
]

# Dataset-specific columns. split1..3: the official split membership, "train" | "test" | "unused".
EXTRA_FIELDS = {
    "ucf101": [pa.field(f"split{i}", pa.string()) for i in (1, 2, 3)],
    "hmdb51": [pa.field(f"split{i}", pa.string()) for i in (1, 2, 3)],
    "k400": [pa.field("time_start", pa.int32()), pa.field("time_end", pa.int32())],
    "k600": [pa.field("time_start", pa.int32()), pa.field("time_end", pa.int32())],
    "ssv2": [pa.field("template", pa.string()), pa.field("placeholders", pa.list_(pa.string()))],
}

REJECT_FIELDS = [
    pa.field("video_id", pa.string()),
    pa.field("source_path", pa.string()),
    pa.field("split", pa.string()),
    pa.field("class_name", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("key", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("label", pa.int32()),
]

CLASS_FIELDS = [pa.field("label", pa.int32()), pa.field("class_name", pa.string())]


def manifest_schema(dataset: str, metadata: dict | None = None) -> pa.Schema:
    schema = pa.schema(MANIFEST_FIELDS + EXTRA_FIELDS.get(dataset, []))
    if metadata:
        schema = schema.with_metadata({b"frostline": json.dumps(metadata, sort_keys=True).encode()})
    return schema


def reject_schema() -> pa.Schema:
    return pa.schema(REJECT_FIELDS)


def class_schema() -> pa.Schema:
    return pa.schema(CLASS_FIELDS)


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) as a table of `schema`: missing keys become nulls, keys outside the schema are ignored."""
    return pa.Table.from_pylist(rows, schema=schema)


def classes_table(class_names: list[str]) -> pa.Table:
    return pa.table({"label": pa.array(range(len(class_names)), pa.int32()),
                     "class_name": pa.array(class_names, pa.string())}, schema=class_schema())


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_table(store: Store, rel: str, table: pa.Table) -> None:
    store.write_bytes(rel, table_bytes(table))


def read_table(store: Store, rel: str, check: bool = True) -> pa.Table:
    """One Parquet file of `store`. `check=False` skips the existence check (one request less on S3) when
    the caller just listed the file; a missing file then still raises FileNotFoundError naming it."""
    if check and not store.exists(rel):
        raise FileNotFoundError(f"{store.url_of(rel)} does not exist")
    # one thread: these tables are small, and Arrow's thread pool can abort a short-lived tool at exit
    # ("terminate called without an active exception") when its workers outlive the interpreter
    # ParquetFile.read: a third of read_table's cost on small files (no dataset layer), which a merge of
    # thousands of fragments feels
    return parse_table(store.read_bytes(rel), store.url_of(rel))


def parse_table(data: bytes, where: str) -> pa.Table:
    """The Parquet file `data` (read from `where`, which the error names when it is not Parquet)."""
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    except (pa.ArrowException, OSError) as e:
        raise TableError(f"{where}: not a readable Parquet file ({e})") from e


# the kind of value each column the readers use must hold (an all-null column passes: nulls are checked apart)
_INTEGER = ("offset", "size", "label", "num_frames", "source_label", "bytes")
_TEXT = ("key", "shard", "class_name", "sha256", "split", "dataset", "video_id", "prompt")


def require_columns(table: pa.Table, columns, where: str) -> pa.Table:
    """`table` when it has every one of `columns`, each of its kind (integers, text); else an error naming the
    file and the missing or mistyped columns."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise TableError(f"{where}: missing column(s) {', '.join(missing)} (has {', '.join(table.column_names)})")
    for c in columns:
        kind = table.schema.field(c).type
        if pa.types.is_null(kind):
            continue
        if c in _INTEGER and not pa.types.is_integer(kind):
            raise TableError(f"{where}: column {c} holds {kind}, not integers")
        if c in _TEXT and not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise TableError(f"{where}: column {c} holds {kind}, not text")
    return table


def bad_store_path(rel) -> str | None:
    """Why `rel` (a manifest's `shard`) is not a path inside its store, or None when it is one: a relative POSIX
    path without `..`, `.` or empty parts, no URL, no NUL."""
    if not isinstance(rel, str) or not rel:
        return "empty"
    if "\0" in rel or "\\" in rel:
        return "not a plain path"
    if rel.startswith("/") or "://" in rel:
        return "an absolute path or URL, not a path inside the store"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "outside the store ('..') or not a plain relative path"
    return None


def check_store_paths(table: pa.Table, where: str, column: str = "shard") -> None:
    """Every row's `column` is a path inside the store (`bad_store_path`); the error names the first row that is
    not. One check per distinct value, so 240k rows over 500 shards cost 500 checks."""
    values = table.column(column).combine_chunks().dictionary_encode()
    names = values.dictionary.to_pylist()
    bad = {i: why for i, n in enumerate(names) if (why := bad_store_path(n)) is not None}
    if values.null_count:
        bad[-1] = "empty"
    if not bad:
        return
    indices = values.indices.to_numpy(zero_copy_only=False)
    nulls = pc.is_null(values).to_numpy(zero_copy_only=False)
    for row in range(len(indices)):
        code = -1 if nulls[row] else int(indices[row])
        if code in bad:
            key = table.column("key")[row].as_py() if "key" in table.column_names else None
            shown = names[code] if code >= 0 else None
            raise TableError(f"{where}: row {row}" + (f" (key {key!r})" if key is not None else "") +
                             f": {column} {shown!r} is {bad[code]}")


def read_manifest(dir_or_url: str) -> pa.Table:
    """The manifest of a shard store (local folder or s3://bucket/prefix)."""
    return read_table(Store(dir_or_url), MANIFEST)


def read_classes(dir_or_url: str) -> pa.Table:
    return read_table(Store(dir_or_url), CLASSES)


def read_rejects(dir_or_url: str) -> pa.Table:
    return read_table(Store(dir_or_url), REJECTS)


def store_metadata(table: pa.Table) -> dict:
    """The conversion settings a manifest was written with (codec, fps, short side, keyframe interval...)."""
    meta = table.schema.metadata or {}
    raw = meta.get(b"frostline")
    if not raw:
        return {}
    try:
        settings = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        settings = None
    if not isinstance(settings, dict):
        raise TableError("the manifest's 'frostline' metadata (its conversion settings) is damaged: not a JSON object")
    return settings
