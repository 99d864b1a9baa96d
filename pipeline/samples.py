"""What a loader reads: the split's samples, each resolved to its line in its shard's DALI index.

A split file (or a shard store's manifest) names each sample by shard URL and tar offset. Here every row is
matched to the sample its shard's index lists at that offset, so the loader can write index files that list only
the split's samples, in any order, and DALI reads exactly those (ranged reads on s3://), never the rest.
"""
from __future__ import annotations

import fnmatch
import os
import posixpath
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shards.index import IndexedSample, parse_index
from shards.manifest import read_classes, read_manifest
from shards.splits import read_split
from shards.storage import Store, is_remote

from .sampling import flip_changes_label


@dataclass
class SampleTable:
    """The samples one loader reads (all ranks), in the split file's order."""

    keys: list[str]
    shard: np.ndarray            # int [N]: index into `shards`
    source_label: np.ndarray     # int [N]: label stored in the shard (`{key}.lbl`)
    label: np.ndarray            # int [N]: label in the split's own class list
    entries: list[IndexedSample]  # [N]: the sample's index entry in its shard
    shards: list[str]            # tar URLs (absolute local paths or s3://)
    classes: list[tuple[int, str, str]]  # (label, class_name, prompt)
    fragments: "Fragments | None" = None  # the stored streams' fragment tables (None: no sample has one)

    def __len__(self) -> int:
        return len(self.keys)

    def label_map(self) -> dict[int, int]:
        """source label -> split label; one split label per source label, or the split file is inconsistent."""
        pairs = {}
        for s, lb in zip(self.source_label.tolist(), self.label.tolist()):
            if pairs.setdefault(s, lb) != lb:
                raise ValueError(f"source label {s} maps to both split labels {pairs[s]} and {lb}")
        return pairs

    def no_flip_sources(self) -> list[int]:
        """Source labels whose class name changes meaning under a horizontal flip (SSv2 left/right)."""
        names = {lb: name for lb, name, _ in self.classes}
        return sorted({s for s, lb in self.label_map().items() if flip_changes_label(names.get(lb, ""))})


@dataclass
class Fragments:
    """Every sample's fragment table in flat arrays (sample i's fragments are [start[i], start[i] + count[i])),
    so a batch's cut points are found with one vectorised search, whatever the videos' lengths."""

    num_frames: np.ndarray   # int64 [N]: `num_frames` of the stored stream (= `{key}.nfr`)
    start: np.ndarray        # int64 [N]
    count: np.ndarray        # int64 [N]: 0 for a sample without a table (decoded uncut)
    offsets: np.ndarray      # int64 [F]: byte offset of each fragment's moof box
    frames: np.ndarray       # int64 [F]: first frame of each fragment

    def __post_init__(self):
        # (sample, frame) packed into one sorted key, so one searchsorted finds each sample's fragment
        self._key = np.repeat(np.arange(len(self.count), dtype=np.int64), self.count) << 32 | self.frames

    @classmethod
    def from_columns(cls, keys, num_frames, offsets, frames, where: str = "split") -> "Fragments | None":
        """From the split's / manifest's `num_frames`, `fragment_offsets`, `fragment_frames` (lists or None);
        a row whose table is not increasing, or disagrees in length, is an error naming it."""
        if all(o is None for o in offsets):
            return None
        count = np.zeros(len(keys), np.int64)
        for row, (key, n, o, f) in enumerate(zip(keys, num_frames, offsets, frames)):
            if o is None or f is None or n is None or not o:
                continue                                    # no table: decoded whole
            if len(o) != len(f) or np.any(np.diff(o) <= 0) or np.any(np.diff(f) <= 0) or f[0] < 0 or o[0] <= 0:
                raise ValueError(f"{where} row {row} (key {key!r}): broken fragment table "
                                 f"(offsets {o[:4]}..., frames {f[:4]}...)")
            count[row] = len(o)
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        flat = [(o, f) for o, f, c in zip(offsets, frames, count) if c]
        return cls(num_frames=np.array([n or 0 for n in num_frames], np.int64), start=start, count=count,
                   offsets=np.fromiter((x for o, _ in flat for x in o), np.int64, int(count.sum())),
                   frames=np.fromiter((x for _, f in flat for x in f), np.int64, int(count.sum())))

    def cut(self, samples: np.ndarray, first_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(init bytes, anchor byte, frame offset) per sample: decode `stream[:init] + stream[anchor:]`, whose
        frame 0 is frame `offset` of the stream, the first frame of the last fragment starting at or before
        `first_frame`. (0, 0, 0): the whole stream (no fragment table)."""
        samples = np.asarray(samples, np.int64)
        if len(self.offsets) == 0:
            zero = np.zeros(len(samples), np.int64)
            return zero, zero, zero.astype(np.int32)
        want = samples << 32 | np.maximum(np.asarray(first_frame, np.int64), 0)
        pos = np.searchsorted(self._key, want, side="right") - 1
        has = (self.count[samples] > 0) & (pos >= self.start[samples])
        last = len(self.offsets) - 1
        init = np.where(has, self.offsets[np.minimum(self.start[samples], last)], 0)
        pos = np.clip(pos, 0, last)
        return init, np.where(has, self.offsets[pos], 0), np.where(has, self.frames[pos], 0).astype(np.int32)


def _fragments(rows: pa.Table, where: str) -> Fragments | None:
    cols = rows.column_names
    if "fragment_offsets" not in cols or "fragment_frames" not in cols or "num_frames" not in cols:
        return None
    return Fragments.from_columns(rows.column("key").to_pylist(), rows.column("num_frames").to_pylist(),
                                  rows.column("fragment_offsets").to_pylist(), rows.column("fragment_frames").to_pylist(),
                                  where)


def index_url(shard_url: str) -> str:
    """`train-000000.tar` -> `train-000000.idx` beside it (the shard store's naming)."""
    if not shard_url.endswith(".tar"):
        raise ValueError(f"{shard_url}: shard URLs end in .tar")
    return shard_url[:-4] + ".idx"


def _read_text(url: str) -> str:
    folder, name = url.rsplit("/", 1) if is_remote(url) else os.path.split(os.path.abspath(url))
    return Store(folder).read_bytes(name).decode()


def _resolve(keys: list[str], shard_urls: list[str], offsets: list[int], where: str) -> tuple[np.ndarray, list, list]:
    """Match each (shard, offset) to its index entry; errors name the split row."""
    shards = sorted(set(shard_urls))
    sid = {u: i for i, u in enumerate(shards)}
    by_offset: dict[str, dict[int, IndexedSample]] = {}
    for u in shards:
        try:
            text = _read_text(index_url(u))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{where}: index file {index_url(u)} of shard {u} not found") from e
        by_offset[u] = {s.offset: s for s in parse_index(text)}
    entries = []
    for row, (key, u, off) in enumerate(zip(keys, shard_urls, offsets)):
        entry = by_offset[u].get(int(off))
        if entry is None or entry.key != key:
            found = f"sample {entry.key!r}" if entry is not None else "no sample"
            raise ValueError(f"{where} row {row} (key {key!r}): {index_url(u)} has {found} at offset {off}")
        if "mp4" not in {m.ext for m in entry.members}:
            raise ValueError(f"{where} row {row} (key {key!r}): sample has no .mp4 member in {u}")
        entries.append(entry)
    return np.array([sid[u] for u in shard_urls], dtype=np.int64), entries, shards


def from_split(url: str) -> SampleTable:
    """A split Parquet file (`shards.splits` format) and its classes file."""
    rows, classes = read_split(url)
    if rows.num_rows == 0:
        raise ValueError(f"{url}: split has no rows")
    keys = rows.column("key").to_pylist()
    shard_idx, entries, shards = _resolve(keys, rows.column("shard").to_pylist(),
                                          rows.column("offset").to_pylist(), url)
    return SampleTable(
        keys=keys, shard=shard_idx,
        source_label=np.asarray(rows.column("source_label").to_pylist(), dtype=np.int64),
        label=np.asarray(rows.column("label").to_pylist(), dtype=np.int64),
        entries=entries, shards=shards, classes=_classes(classes), fragments=_fragments(rows, url))


def from_manifest(store_url: str, shards: str | None = None, split: str | None = None) -> SampleTable:
    """All samples of a shard store, optionally only those in shards matching the glob `shards`
    (e.g. "val-*.tar") and/or whose manifest `split` is `split`. Labels are the store's own labels."""
    if store_url.endswith("manifest.parquet"):
        store_url = store_url[: -len("manifest.parquet")].rstrip("/")
    table = read_manifest(store_url)
    if split is not None:
        table = table.filter(pc.equal(table.column("split"), split))
    rel = table.column("shard").to_pylist()
    keep = [i for i, r in enumerate(rel) if shards is None or fnmatch.fnmatch(posixpath.basename(r), shards)]
    table = table.take(pa.array(keep, pa.int64()))
    if table.num_rows == 0:
        raise ValueError(f"{store_url}: no samples match shards={shards!r} split={split!r}")
    store = Store(store_url)
    urls = [store.url_of(r) for r in table.column("shard").to_pylist()]
    keys = table.column("key").to_pylist()
    where = f"{store_url}/manifest.parquet"
    shard_idx, entries, shard_urls = _resolve(keys, urls, table.column("offset").to_pylist(), where)
    labels = np.asarray(table.column("label").to_pylist(), dtype=np.int64)
    cls = read_classes(store_url)
    classes = [(int(lb), str(n), str(n))
               for lb, n in zip(cls.column("label").to_pylist(), cls.column("class_name").to_pylist())]
    return SampleTable(keys=keys, shard=shard_idx, source_label=labels, label=labels.copy(),
                       entries=entries, shards=shard_urls, classes=classes, fragments=_fragments(table, where))


def _classes(table: pa.Table) -> list[tuple[int, str, str]]:
    cols = table.column_names
    names = table.column("class_name").to_pylist()
    prompts = table.column("prompt").to_pylist() if "prompt" in cols else names
    return [(int(lb), str(n), str(p or n)) for lb, n, p in zip(table.column("label").to_pylist(), names, prompts)]


def load(split: str, shards: str | None = None, manifest_split: str | None = None) -> SampleTable:
    """A split file, or a shard store (folder / s3 URL / its manifest.parquet) read through its manifest."""
    is_store = split.endswith("manifest.parquet") or not split.endswith(".parquet")
    if is_store:
        return from_manifest(split, shards=shards, split=manifest_split)
    return from_split(split)
