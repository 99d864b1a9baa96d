"""Check a shard store against its manifest: every member, every index, no shard missing or orphaned.

`verify(url)` reads `manifest.parquet`, lists the store's `.tar`/`.idx` files, then reads each shard once
(one request on S3) and checks, per manifest row:
- the tar holds the sample's members at `offset`, in the written order (`.mp4`, `.json`, `.lbl`, `.nfr`),
  spanning exactly `size` bytes;
- `.mp4`: its length is `bytes` and its SHA-256 is `sha256`;
- `.lbl` is `label`, `.nfr` is `num_frames` (little-endian int32), `.json` is the row without the
  placement columns (`shard`, `offset`, `size`);
and per shard: the tar is whole (no member runs past its end), it holds no sample the manifest does not
list, and its `.idx` is exactly the index of the tar as written (`format_index` of its members), so an
index whose offsets point at other samples is caught. Shards the manifest names but the store lacks are
*missing*; `.tar`/`.idx` files no row names are *orphaned*.

Findings are `Problem(kind, file, key, detail)`; the tool prints one line each and exits 1 when there is
any (see tools/verify_shards.py).
"""
from __future__ import annotations

import hashlib
import io
import json
import posixpath
import struct
import tarfile
from collections import Counter
from dataclasses import dataclass, field

from . import manifest as mf
from . import storage
from .index import BLOCK, format_index, scan_tar, split_name
from .storage import Store
from .writer import padded, sample_members

PLACEMENT = ("shard", "offset", "size")
CHECKED = ("key", "shard", "offset", "size", "label", "num_frames", "bytes", "sha256")   # columns verify reads


@dataclass(frozen=True)
class Problem:
    kind: str          # missing shard, missing index, orphaned, truncated, index, members, sha256, label, ...
    file: str          # relative to the store
    key: str = ""      # the sample, when the problem is one sample's
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.kind}: {self.detail}" if self.detail else f"{where}: {self.kind}"


@dataclass
class Report:
    url: str
    shards: int = 0
    samples: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        kinds = Counter(p.kind for p in self.problems)
        found = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())) or "none"
        bad_samples = len({p.key for p in self.problems if p.key})
        return (f"store      {self.url}\nshards     {self.shards}\nsamples    {self.samples}\n"
                f"problems   {len(self.problems)} ({found}); samples affected: {bad_samples}\n"
                f"verdict    {'clean' if self.ok else 'PROBLEMS FOUND'}")


def verify(url: str) -> Report:
    """Check the store at `url` (folder or s3:// URL); raises FileNotFoundError when it has no manifest."""
    store = Store(url)
    manifest = mf.read_table(store, mf.MANIFEST)
    where = store.url_of(mf.MANIFEST)
    mf.require_columns(manifest, CHECKED, where)
    mf.check_store_paths(manifest, where)
    report = Report(store.url, samples=manifest.num_rows)
    rows_by_shard: dict[str, list[dict]] = {}
    for row in manifest.to_pylist():
        rows_by_shard.setdefault(row["shard"], []).append(row)
    files = set(_files(store, rows_by_shard))
    named = set(rows_by_shard) | {s[:-4] + ".idx" for s in rows_by_shard}
    for orphan in sorted(f for f in files - named if f.endswith((".tar", ".idx"))):
        report.problems.append(Problem("orphaned", orphan, detail="no manifest row names this shard"))
    for shard in sorted(rows_by_shard):
        rows = rows_by_shard[shard]
        if shard not in files:
            report.problems.append(Problem("missing shard", shard, detail=f"{len(rows)} samples of the manifest"))
            continue
        report.shards += 1
        index_name = shard[:-4] + ".idx"
        index = store.read_bytes(index_name).decode(errors="replace") if index_name in files else None
        if index is None:
            report.problems.append(Problem("missing index", index_name))
        report.problems += check_shard(shard, store.read_bytes(shard), rows, index)
    return report


def verify_split(url: str, store: str | None = None) -> Report:
    """Check a split file's rows against the shards they name: each row's tar members at `offset` spanning `size`,
    `.lbl` = `source_label`, `.nfr` = `num_frames`, and the row's fragment table = the stored stream's. The split
    itself is read with its checks first (`shards.splits.read_split`: its set, columns, shards inside the store).
    With `store`, every row's shard must also lie in that store (a split of another store is reported per shard)."""
    from .splits import read_split
    from .transcode import VideoError, stream_fragments

    rows, _ = read_split(url)
    report = Report(url, samples=rows.num_rows)
    by_shard: dict[str, list[dict]] = {}
    for row in rows.to_pylist():
        by_shard.setdefault(row["shard"], []).append(row)
    prefix = Store(store).url.rstrip("/") + "/" if store else None
    for shard in sorted(by_shard):
        if prefix and not shard.startswith(prefix):
            report.problems.append(Problem("outside the store", shard, detail=f"{len(by_shard[shard])} samples of "
                                                                              f"the split; the store is {store}"))
            continue
        try:
            data = storage.read_bytes(shard)
        except FileNotFoundError:
            report.problems.append(Problem("missing shard", shard, detail=f"{len(by_shard[shard])} samples of the "
                                                                          "split"))
            continue
        report.shards += 1
        samples, broken = _scan(data)
        if broken:
            report.problems.append(Problem("truncated", shard, detail=broken))
        by_offset = {s.offset: s for s in samples}
        for row in by_shard[shard]:
            key, sample = row["key"], by_offset.get(row["offset"])
            if sample is None or sample.key != key:
                found = f"sample {sample.key}" if sample is not None else "no sample"
                report.problems.append(Problem("members", shard, key, f"{found} starts at offset {row['offset']}"))
                continue
            if sample.size != row["size"]:
                report.problems.append(Problem("size", shard, key, f"spans {sample.size} bytes, the split says "
                                                                   f"{row['size']}"))
            got = {m.ext: data[m.offset:m.offset + m.size] for m in sample.members}
            for ext, column in (("lbl", "source_label"), ("nfr", "num_frames")):
                raw = got.get(ext, b"")
                value = struct.unpack("<i", raw)[0] if len(raw) == 4 else None
                if column in row and row[column] is not None and value != row[column]:
                    report.problems.append(Problem("label" if ext == "lbl" else "frames", shard, key,
                                                   f".{ext} holds {value}, the split's {column} is {row[column]}"))
            want = (row.get("fragment_offsets"), row.get("fragment_frames"))
            if want[0]:
                try:
                    have = stream_fragments(got.get("mp4", b""))[:2]
                except VideoError as e:
                    have = (f"unreadable ({e})", None)
                if list(have) != [list(want[0]), list(want[1] or [])]:
                    report.problems.append(Problem("fragments", shard, key, "the split's fragment table "
                                                   f"({want[0][:3]}...) disagrees with the stored stream's "
                                                   f"({have[0][:3] if isinstance(have[0], list) else have[0]}...)"))
    return report


def _files(store: Store, shards) -> list[str]:
    """The store's files at the top level and in the folders the manifest places shards in."""
    folders = {""} | {posixpath.dirname(s) for s in shards}
    return [f for d in sorted(folders) for f in store.list(d) if not posixpath.basename(f).startswith(".")]


def _scan(data: bytes) -> tuple[list, str | None]:
    """The tar's samples, and why it is not whole (None when it is): unreadable headers, or a member whose
    data runs past the end of the file."""
    try:
        samples = scan_tar(io.BytesIO(data))
    except tarfile.TarError as e:
        return [], f"unreadable tar: {e}"
    whole = [s for s in samples if s.members[-1].offset + s.members[-1].size <= len(data)]
    if len(whole) < len(samples):
        cut = samples[len(whole)]
        return whole, (f"sample {cut.key} ends at byte {cut.members[-1].offset + cut.members[-1].size}, past the "
                       f"end of the file ({len(data)} bytes)")
    end = samples[-1].members[-1].offset + padded(samples[-1].members[-1].size) if samples else 0
    if data[end:end + 2 * BLOCK] != bytes(2 * BLOCK):   # a cut at a sample boundary leaves no end marker
        return samples, f"no end-of-archive marker after byte {end} (the file has {len(data)} bytes)"
    return samples, None


def check_shard(shard: str, data: bytes, rows: list[dict], index_text: str | None) -> list[Problem]:
    """The problems of one shard (its bytes, its manifest rows, its index text or None)."""
    problems = []
    samples, broken = _scan(data)
    if broken:
        problems.append(Problem("truncated", shard, detail=broken))
    by_offset = {s.offset: s for s in samples}
    listed = set()
    for row in rows:
        key = row["key"]
        sample = by_offset.get(row["offset"])
        if sample is None or sample.key != key:
            found = f"sample {sample.key}" if sample is not None else "no sample"
            problems.append(Problem("members", shard, key, f"{found} starts at offset {row['offset']}"))
            continue
        listed.add(sample.offset)
        problems += _check_sample(shard, data, row, sample)
    keys = {r["key"] for r in rows}
    for s in samples:
        if s.offset not in listed and s.key not in keys:
            problems.append(Problem("unlisted sample", shard, s.key, "in the tar but not in the manifest"))
    if index_text is not None and samples:
        expected = format_index(samples)
        if index_text != expected:
            problems += _index_problems(shard[:-4] + ".idx", index_text, expected)
    return problems


def _check_sample(shard: str, data: bytes, row: dict, sample) -> list[Problem]:
    key = row["key"]
    got = {m.ext: data[m.offset:m.offset + m.size] for m in sample.members}
    out = []
    expected_exts = [ext for ext, _ in sample_members(key, b"", {}, 0, 0)]
    if [m.ext for m in sample.members] != expected_exts:
        out.append(Problem("members", shard, key, f"members {[m.ext for m in sample.members]}, "
                                                  f"expected {expected_exts}"))
    if sample.size != row["size"]:
        out.append(Problem("size", shard, key, f"spans {sample.size} bytes, the manifest says {row['size']}"))
    video = got.get("mp4", b"")
    if len(video) != row["bytes"] or hashlib.sha256(video).hexdigest() != row["sha256"]:
        out.append(Problem("sha256", shard, key, f".mp4 ({len(video)} bytes) does not match the manifest's "
                                                 f"sha256/bytes ({row['bytes']} bytes)"))
    for ext, column in (("lbl", "label"), ("nfr", "num_frames")):
        raw = got.get(ext, b"")
        value = struct.unpack("<i", raw)[0] if len(raw) == 4 else None
        if value != row[column]:
            out.append(Problem(column if ext == "lbl" else "frames", shard, key,
                               f".{ext} holds {value}, the manifest's {column} is {row[column]}"))
    try:
        meta = json.loads(got.get("json", b"").decode("utf-8"))
    except ValueError:
        meta = None
    if meta != {k: v for k, v in row.items() if k not in PLACEMENT}:
        out.append(Problem("json", shard, key, ".json differs from the manifest row"))
    return out


def _index_problems(name: str, got: str, expected: str) -> list[Problem]:
    """One problem per index line that differs from the tar's, naming the sample the line should describe."""
    got_lines, want_lines = got.splitlines(), expected.splitlines()
    out = []
    if got_lines[:1] != want_lines[:1]:
        out.append(Problem("index", name, detail=f"header {got_lines[:1]} should be {want_lines[:1]}"))
    for no, want in enumerate(want_lines[1:], start=2):
        have = got_lines[no - 1] if no - 1 < len(got_lines) else None
        if have != want:
            key = split_name(want.split()[3])[0]
            out.append(Problem("index", name, key, f"line {no} does not match the tar (offsets or members)"))
    if len(got_lines) > len(want_lines):
        out.append(Problem("index", name, detail=f"{len(got_lines) - len(want_lines)} lines more than the tar has"))
    return out
