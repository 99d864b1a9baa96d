"""What a loader reads: the split's samples as columns (shard, byte span, labels, frame counts, fragment tables).

A split file (or a shard store's manifest) names each sample by shard URL and the byte span of its tar members
(`offset` of the first header, `size` to the end of the last member). That is all a reader needs: it reads the span
and finds the members in their own tar headers (`pipeline.reader`), which also proves the span holds the sample
the row names. So building a loader reads no shard index and sends no request per shard; it is a Parquet read
plus numpy, linear in rows with a small constant (about 1 s for 240k rows on a 2-core machine).
"""
from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shards.manifest import CLASSES, MANIFEST, check_store_paths, read_classes, read_manifest, require_columns
from shards.splits import SplitError, read_split
from shards.storage import Store

from .sampling import flip_changes_label


@dataclass
class SampleTable:
    """The samples one loader reads (all ranks), in the split file's order."""

    keys: list[str]
    shard: np.ndarray            # int [N]: index into `shards`
    source_label: np.ndarray     # int [N]: label stored in the shard (`{key}.lbl`)
    label: np.ndarray            # int [N]: label in the split's own class list
    offset: np.ndarray           # int64 [N]: the sample's first tar header in its shard
    size: np.ndarray             # int64 [N]: bytes from there to the end of its last member's padded data
    shards: list[str]            # tar URLs (absolute local paths or s3://)
    classes: list[tuple[int, str, str]]  # (label, class_name, prompt)
    fragments: "Fragments | None" = None  # the stored streams' fragment tables (None: no sample has one)
    where: str = "split"         # the file the rows come from, for error messages

    def __len__(self) -> int:
        return len(self.keys)

    def label_map(self) -> dict[int, int]:
        """source label -> split label; one split label per source label, or the split file is inconsistent.
        (One 1-D unique over packed pairs: a row-wise unique of 240k pairs took seconds.)"""
        if getattr(self, "_label_map", None) is None:
            packed = np.unique((self.source_label.astype(np.int64) << 32) | (self.label.astype(np.int64) & 0xFFFFFFFF))
            src, lab = packed >> 32, (packed & 0xFFFFFFFF).astype(np.int32).astype(np.int64)
            dup = np.flatnonzero(src[1:] == src[:-1])
            if len(dup):
                i = int(dup[0])
                raise SplitError(f"source label {int(src[i])} maps to both split labels {int(lab[i])} and "
                                 f"{int(lab[i + 1])}")
            self._label_map = dict(zip(src.tolist(), lab.tolist()))
        return self._label_map

    def no_flip_sources(self) -> list[int]:
        """Source labels whose class name changes meaning under a horizontal flip (SSv2 left/right)."""
        names = {lb: name for lb, name, _ in self.classes}
        return sorted({s for s, lb in self.label_map().items() if flip_changes_label(names.get(lb, ""))})

    def check_labels(self) -> None:
        """Every split label names a class of the split's class list; the error names the first sample that does
        not."""
        known = np.array(sorted(lb for lb, _, _ in self.classes), np.int64)
        bad = np.flatnonzero(~np.isin(self.label, known))
        if len(bad):
            i = int(bad[0])
            raise SplitError(f"{self.where} row {i} (key {self.keys[i]!r}): label {int(self.label[i])} is not in "
                             f"the split's {len(known)} classes ({len(bad)} rows like it)")


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
        """From the split's / manifest's `num_frames`, `fragment_offsets`, `fragment_frames` (Arrow columns or
        Python lists; null: no table). Vectorised over rows (the lists' offsets and flat values, no Python per
        row); a row whose table is not increasing, or disagrees in length, is an error naming it."""
        offsets, frames = _list_array(offsets), _list_array(frames)
        if offsets.null_count == len(offsets):
            return None
        n = len(offsets)
        nf = _numpy(pc.fill_null(_array(num_frames, pa.int64()), 0))
        n_off, n_fr = _lengths(offsets), _lengths(frames)
        has = (n_off > 0) & (n_fr >= 0)
        flat_o, flat_f = _values(offsets), _values(frames)
        bad = has & (n_off != n_fr)
        count = np.where(has, n_off, 0)
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        o, f = flat_o[np.repeat(has, np.maximum(n_off, 0))], np.zeros(0, np.int64)
        if not bad.any():
            f = flat_f[np.repeat(has, np.maximum(n_fr, 0))]
            first = np.zeros(len(o), bool)
            first[start[has]] = True
            wrong = np.zeros(len(o), bool)
            wrong[1:] = ((np.diff(o) <= 0) | (np.diff(f) <= 0)) & ~first[1:]
            wrong |= first & ((f < 0) | (o <= 0))
            bad[np.repeat(np.arange(n), count)[wrong]] = True
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            key = keys[row].as_py() if isinstance(keys, (pa.Array, pa.ChunkedArray)) else keys[row]
            raise SplitError(f"{where} row {row} (key {key!r}): broken fragment table "
                             f"(offsets {offsets[row].as_py()[:4]}..., frames {frames[row].as_py()[:4]}...)")
        return cls(num_frames=nf, start=start, count=count, offsets=o, frames=f)

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


def _array(x, type_) -> pa.Array:
    if isinstance(x, pa.ChunkedArray):
        x = x.combine_chunks()
    return pc.cast(x, type_) if isinstance(x, pa.Array) else pa.array(x, type_)


def _list_array(x) -> pa.ListArray:
    return _array(x, pa.list_(pa.int64()))


def _numpy(x: pa.Array) -> np.ndarray:
    return np.asarray(x.to_numpy(zero_copy_only=False), np.int64)


def _lengths(x: pa.ListArray) -> np.ndarray:
    """Length of each list, -1 for null."""
    return _numpy(pc.fill_null(pc.list_value_length(x), -1))


def _values(x: pa.ListArray) -> np.ndarray:
    """The flat values of exactly these lists (a sliced array's offsets may not start at 0)."""
    bounds = x.offsets.to_numpy()
    return _numpy(x.values)[bounds[0]:bounds[-1]] if len(x) else np.zeros(0, np.int64)


def _fragments(rows: pa.Table, where: str) -> Fragments | None:
    cols = rows.column_names
    if "fragment_offsets" not in cols or "fragment_frames" not in cols or "num_frames" not in cols:
        return None
    return Fragments.from_columns(rows.column("key"), rows.column("num_frames"), rows.column("fragment_offsets"),
                                  rows.column("fragment_frames"), where)


def _table(rows: pa.Table, urls: list[str], labels: np.ndarray, source_labels: np.ndarray,
           classes: list[tuple[int, str, str]], where: str) -> SampleTable:
    """The columns every loader needs, from rows whose `shard` column has become the absolute `urls` (one per
    row, as an Arrow column), vectorised."""
    enc = pa.array(urls, pa.string()).dictionary_encode() if isinstance(urls, list) else urls.dictionary_encode()
    names = enc.dictionary.to_pylist()
    order = np.argsort(names)                          # shard ids in sorted URL order
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    shard = rank[_numpy(enc.indices)]
    t = SampleTable(keys=rows.column("key").to_pylist(), shard=shard, source_label=source_labels, label=labels,
                    offset=_numpy(_array(rows.column("offset"), pa.int64())),
                    size=_numpy(_array(rows.column("size"), pa.int64())),
                    shards=[names[i] for i in order], classes=classes, fragments=_fragments(rows, where), where=where)
    bad = np.flatnonzero((t.offset < 0) | (t.offset % 512 != 0) | (t.size < 1024))
    if len(bad):
        i = int(bad[0])
        raise SplitError(f"{where} row {i} (key {t.keys[i]!r}): offset {int(t.offset[i])} / size {int(t.size[i])} "
                         f"cannot be a sample's tar members (offsets are multiples of 512; a sample holds at least "
                         f"one header and one block)")
    return t


def from_split(url: str) -> SampleTable:
    """A split Parquet file (`shards.splits` format) and its classes file."""
    rows, classes = read_split(url)
    if rows.num_rows == 0:
        raise SplitError(f"{url}: the split has no rows: nothing to train on or evaluate; rerun make_splits")
    t = _table(rows, rows.column("shard").combine_chunks(), _numpy(rows.column("label").combine_chunks()),
               _numpy(rows.column("source_label").combine_chunks()), _classes(classes), url)
    t.check_labels()
    return t


MANIFEST_COLUMNS = ("key", "shard", "offset", "size", "label", "split")   # what a loader reads of a manifest


def from_manifest(store_url: str, shards: str | None = None, split: str | None = None) -> SampleTable:
    """All samples of a shard store, optionally only those in shards matching the glob `shards`
    (e.g. "val-*.tar") and/or whose manifest `split` is `split`. Labels are the store's own labels."""
    if store_url.endswith("manifest.parquet"):
        store_url = store_url[: -len("manifest.parquet")].rstrip("/")
    table = read_manifest(store_url)
    where = f"{store_url}/{MANIFEST}"
    require_columns(table, MANIFEST_COLUMNS, where)
    check_store_paths(table, where)
    if split is not None:
        table = table.filter(pc.equal(table.column("split"), split))
    if shards is not None:
        rel = table.column("shard").combine_chunks().dictionary_encode()
        names = rel.dictionary.to_pylist()
        ok = np.array([fnmatch.fnmatch(posixpath.basename(r), shards) for r in names], bool)   # per shard, not row
        table = table.filter(pa.array(ok[_numpy(rel.indices)] if len(names) else np.zeros(0, bool)))
    if table.num_rows == 0:
        raise SplitError(f"{store_url}: no samples match shards={shards!r} split={split!r}")
    store = Store(store_url)
    rel = table.column("shard").combine_chunks().dictionary_encode()
    urls = pa.DictionaryArray.from_arrays(rel.indices, pa.array([store.url_of(r) for r in rel.dictionary.to_pylist()]))
    labels = _numpy(pc.fill_null(table.column("label").combine_chunks(), -1))
    cls = require_columns(read_classes(store_url), ("label", "class_name"), f"{store_url}/{CLASSES}")
    classes = [(int(lb), str(n), str(n))
               for lb, n in zip(cls.column("label").to_pylist(), cls.column("class_name").to_pylist())]
    return _table(table, urls.cast(pa.string()), labels.copy(), labels, classes, where)


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
