"""Reading the planned samples' bytes, ahead of DALI, at a cost that grows with the bytes read.

The loader knows every epoch's order up front (`pipeline.order`), so the reads are planned too:

* **Local shards**: one file descriptor per shard, opened once per loader, and one `os.pread` per sample (its
  whole byte span: tar headers and members). No index files, no per-sample open, no memory maps.
* **s3://**: reads are grouped into *chunks*: consecutive planned samples of one shard whose gaps are small
  (`gap_bytes`) become one ranged GET of at most `chunk_bytes`. A dense split read in an order that walks each
  shard forward (`order.interleave`, `order.by_shard`, test mode) costs one or a few requests per shard per
  epoch; a sparse split or an exact permutation costs one ranged GET per sample. A chunk is held from its first
  use to its last in the plan; `chunk_plan` computes that memory in advance and the loader falls back to
  per-sample reads when it would exceed the buffer budget. Never a HEAD, never a listing per sample.

Every read goes through `shards.storage.retry.retry`: a storage fault is waited out (it never marks a sample bad), and a
fault that outlasts the budget stops the run with an error naming the URL. The bytes are checked before DALI sees
them (`unpack`): each member's tar header must name the split row's key, its checksum must hold, and the span must
hold `.mp4`, `.lbl` and `.nfr`. A span that does not is `ShardDataError` (an error naming the key, never a
silent skip).
"""
from __future__ import annotations

import logging
import os
import posixpath
import resource
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from shards.storage.retry import retry
from shards.transcode import VideoError, stream_fragments
from shards.storage import is_remote

log = logging.getLogger(__name__)

BLOCK = 512


class ShardDataError(ValueError):
    """A shard's bytes are not what the split row says (wrong key, bad header, missing member, wrong label)."""


@dataclass
class Sample:
    """One sample's members as DALI takes them."""

    video: np.ndarray    # uint8 [bytes] of `{key}.mp4`
    label: int           # `{key}.lbl`
    frames: int          # `{key}.nfr`


def describe(key: str, url: str, offset: int) -> str:
    """How errors name a sample: its key, shard and offset."""
    return f"sample {key!r} ({url} at byte {offset})"


def _octal(field: bytes) -> int:
    field = field.rstrip(b"\0 ").lstrip(b" ")
    return int(field, 8) if field else 0


def unpack(buf, key: str, where: str) -> Sample:
    """The `mp4`, `lbl` and `nfr` members of the tar span `buf` of sample `key`. Every header in the span must be
    a valid ustar header (checksum) naming `key.<ext>`; `where` names the sample in errors."""
    view = memoryview(buf)
    members: dict[str, memoryview] = {}
    pos = 0
    while pos + BLOCK <= len(view):
        head = bytes(view[pos:pos + BLOCK])
        if head == b"\0" * BLOCK:
            break
        try:
            stored = _octal(head[148:156])
            size = _octal(head[124:136])
        except ValueError:
            raise ShardDataError(f"{where}: no tar header at byte {pos} of the sample's span") from None
        if stored != sum(head) - sum(head[148:156]) + 8 * 32:
            raise ShardDataError(f"{where}: no tar header at byte {pos} of the sample's span (checksum)")
        name = head[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = head[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") if head[257:262] == b"ustar" else ""
        if prefix:
            name = prefix + "/" + name
        slash = name.rfind("/") + 1
        dot = name.find(".", slash)
        got_key, ext = (name[:dot], name[dot + 1:]) if dot >= 0 else (name, "")
        if got_key != key:
            raise ShardDataError(f"{where}: the shard holds {name!r} there, not a member of {key!r} (the split's "
                                 f"offset points at another sample)")
        data = view[pos + BLOCK:pos + BLOCK + size]
        if len(data) < size:
            raise ShardDataError(f"{where}: member {name!r} is cut short ({len(data)} of {size} bytes)")
        members.setdefault(ext, data)
        pos += BLOCK + -(-size // BLOCK) * BLOCK
    missing = [e for e in ("mp4", "lbl", "nfr") if e not in members]
    if missing:
        raise ShardDataError(f"{where}: no {', '.join('.' + m for m in missing)} member in the sample's span")
    for ext in ("lbl", "nfr"):
        if len(members[ext]) != 4:
            raise ShardDataError(f"{where}: .{ext} holds {len(members[ext])} bytes, not one int32")
    return Sample(video=np.frombuffer(members["mp4"], np.uint8),
                  label=int(np.frombuffer(members["lbl"], "<i4")[0]),
                  frames=int(np.frombuffer(members["nfr"], "<i4")[0]))


def check(span, table, row: int, urls: list[str]) -> Sample:
    """`unpack` the span of table row `row`, and hold it to the row: the whole span is there, and `{key}.lbl` is
    the row's `source_label`."""
    key, off, size = table.keys[row], int(table.offset[row]), int(table.size[row])
    where = describe(key, urls[int(table.shard[row])], off)
    if len(span) < size:
        raise ShardDataError(f"{where}: the shard ends {size - len(span)} bytes before the sample does "
                             f"(a truncated tar)")
    out = unpack(span, key, where)
    if out.label != int(table.source_label[row]):
        raise ShardDataError(f"{where}: its .lbl holds label {out.label} but the split row says source_label "
                             f"{int(table.source_label[row])}")
    if table.fragments is not None:
        check_fragments(out, table.fragments, row, where)
    return out


def check_fragments(sample: Sample, fragments, row: int, where: str) -> None:
    """Hold the row's frame count and fragment table (which decide the bytes the loader cuts and the frame indices
    it asks for) to the stored stream: `.nfr`, and the stream's own `moof` boxes and their sample counts. A stream
    whose boxes cannot be read is a damaged video, left to the decoder (a counted skip), not an error here."""
    want_frames = int(fragments.num_frames[row])
    if want_frames and want_frames != sample.frames:
        raise ShardDataError(f"{where}: its .nfr holds {sample.frames} frames but the split row says num_frames "
                             f"{want_frames}")
    n = int(fragments.count[row])
    if n == 0:
        return
    first = int(fragments.start[row])
    offsets = fragments.offsets[first:first + n].tolist()
    frames = fragments.frames[first:first + n].tolist()
    try:
        got_offsets, got_frames, total = stream_fragments(sample.video)
    except VideoError:
        return   # a damaged video, not a row that disagrees with its store: the decoder finds it and it is counted
    if got_offsets != offsets or got_frames != frames:
        raise ShardDataError(f"{where}: the split row's fragment table (offsets {offsets[:3]}..., frames "
                             f"{frames[:3]}...) disagrees with the stored stream's (offsets {got_offsets[:3]}..., "
                             f"frames {got_frames[:3]}...); the split and the store do not belong together")
    if total != sample.frames:
        raise ShardDataError(f"{where}: the stored stream's fragments hold {total} frames, its .nfr says "
                             f"{sample.frames}")


class ShardFiles:
    """Byte ranges of a set of shards (local paths or s3:// URLs), every read retried through `shards.storage.retry`.

    Counts what it does (`requests`, `bytes`), so tests and `tools/bench/scale.py` can hold it to its plan."""

    def __init__(self, urls: list[str], retry_s: float | None = None, timeout_s: float = 60.0):
        self.urls, self.retry_s = list(urls), retry_s
        self.remote = any(is_remote(u) for u in self.urls)
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.fs = None
        if self.remote:
            import fsspec

            protocols = {u.split("://", 1)[0] for u in self.urls if is_remote(u)}
            if len(protocols) != 1 or any(not is_remote(u) for u in self.urls):
                raise ValueError(f"shards must all be local or all on one object store, got {sorted(protocols)}")
            proto = protocols.pop()
            # one retry mechanism: the client's own retries are off, `shards.storage.retry` waits out faults and logs them.
            # The client is cached per (endpoint, timeout): creating one costs seconds, loaders are built often.
            opts = {"config_kwargs": {"connect_timeout": timeout_s, "read_timeout": timeout_s,
                                      "retries": {"max_attempts": 1, "mode": "standard"}}} if proto == "s3" else {}
            if proto == "s3" and os.environ.get("AWS_ENDPOINT_URL"):
                opts["client_kwargs"] = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
            self.fs = fsspec.filesystem(proto, **opts)
            if hasattr(self.fs, "retries"):
                self.fs.retries = 1
        elif len(self.urls) * 2 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = min(hard, len(self.urls) * 2 + 256) if hard != resource.RLIM_INFINITY else len(self.urls) * 2 + 256
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))

    def _path(self, shard: int) -> str:
        u = self.urls[shard]
        return u.split("://", 1)[1] if self.remote else u

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            with self._lock:
                fd = self._fds.get(shard)
                if fd is None:
                    fd = retry(lambda: os.open(self.urls[shard], os.O_RDONLY), what=f"open {self.urls[shard]}",
                               budget_s=self.retry_s)
                    self._fds[shard] = fd
        return fd

    def read(self, shard: int, start: int, end: int) -> bytes:
        """Bytes [start, end) of a shard: one pread or one ranged GET (retried). Fewer bytes than asked means
        the shard ends early (a truncated tar); the caller reports it."""
        url = self.urls[shard]
        if self.remote:
            path = self._path(shard)
            data = retry(lambda: self.fs.cat_file(path, start=start, end=end),
                         what=f"read {url} bytes {start}-{end}", budget_s=self.retry_s)
        else:
            fd = self._fd(shard)
            data = retry(lambda: os.pread(fd, end - start, start), what=f"read {url} bytes {start}-{end}",
                         budget_s=self.retry_s)
        with self._lock:
            self.requests += 1
            self.bytes += len(data)
        return data

    def sizes(self) -> np.ndarray:
        """Each shard's size in bytes: a stat per local shard, one listing per folder on object storage (never a
        request per shard). A missing shard is FileNotFoundError naming it."""
        out = np.zeros(len(self.urls), np.int64)
        if not self.remote:
            for i, u in enumerate(self.urls):
                try:
                    out[i] = os.path.getsize(u)
                except FileNotFoundError:
                    raise FileNotFoundError(f"shard {u} not found") from None
            return out
        folders: dict[str, list[int]] = {}
        for i in range(len(self.urls)):
            folders.setdefault(posixpath.dirname(self._path(i)), []).append(i)
        for folder, ids in folders.items():
            listing = retry(lambda: self.fs.ls(folder, detail=True, refresh=True),
                            what=f"list {self.urls[ids[0]].rsplit('/', 1)[0]}", budget_s=self.retry_s)
            with self._lock:
                self.requests += 1
            size = {posixpath.basename(e["name"].rstrip("/")): int(e.get("size") or 0) for e in listing}
            for i in ids:
                name = posixpath.basename(self._path(i))
                if name not in size:
                    raise FileNotFoundError(f"shard {self.urls[i]} not found")
                out[i] = size[name]
        return out

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)


@dataclass
class ChunkPlan:
    """Which byte range each planned slot is read from: slot s reads chunk `chunk[s]` = shard `shard[c]` bytes
    [start[c], end[c]), and its sample lies at [offset[s] - start[c], + size[s]) inside it."""

    chunk: np.ndarray      # int [S]
    shard: np.ndarray      # int [C]
    start: np.ndarray      # int64 [C]
    end: np.ndarray        # int64 [C]
    uses: np.ndarray       # int [C]: slots reading each chunk
    peak_bytes: int        # the most chunk bytes held at once, reading slots in order


def chunk_plan(shard: np.ndarray, offset: np.ndarray, size: np.ndarray, *, coalesce: bool,
               chunk_bytes: int = 64 << 20, gap_bytes: int = 1 << 20) -> ChunkPlan:
    """Group the slots' samples (in read order) into ranged reads, vectorised. Without `coalesce` every distinct
    sample is its own read; with it, samples of one shard closer than `gap_bytes` share a read of at most about
    `chunk_bytes`. `peak_bytes` assumes a chunk is held from its first slot to its last."""
    S = len(shard)
    end = offset + size
    by = np.lexsort((offset, shard))
    sh, off, en = shard[by], offset[by], end[by]
    new = np.ones(S, bool)
    if S > 1:
        same = sh[1:] == sh[:-1]
        if coalesce:      # a new read at a new shard, a long gap, or a chunk_bytes boundary
            new[1:] = ~same | (off[1:] - en[:-1] > gap_bytes) | (off[1:] // chunk_bytes != off[:-1] // chunk_bytes)
        else:
            new[1:] = ~same | (off[1:] != off[:-1])
    cid_sorted = np.cumsum(new) - 1
    chunk = np.empty(S, np.int64)
    chunk[by] = cid_sorted
    C = int(cid_sorted[-1]) + 1 if S else 0
    c_start = np.full(C, np.iinfo(np.int64).max)
    np.minimum.at(c_start, cid_sorted, off)
    c_end = np.zeros(C, np.int64)
    np.maximum.at(c_end, cid_sorted, en)
    c_shard = np.zeros(C, np.int64)
    c_shard[cid_sorted] = sh
    uses = np.bincount(chunk, minlength=C)
    # memory: chunk c is held from its first slot to its last
    first = np.full(C, S)
    np.minimum.at(first, chunk, np.arange(S))
    last = np.zeros(C, np.int64)
    np.maximum.at(last, chunk, np.arange(S))
    delta = np.zeros(S + 1, np.int64)
    np.add.at(delta, first, c_end - c_start)
    np.add.at(delta, last + 1, -(c_end - c_start))
    peak = int(np.cumsum(delta).max()) if S else 0
    return ChunkPlan(chunk=chunk, shard=c_shard, start=c_start, end=c_end, uses=uses, peak_bytes=peak)


class Feed:
    """The samples of a plan's slots [first, ...), read by a thread pool up to `ahead` batches before DALI asks
    for them. `batch(i)` returns batch i's samples in slot order (blocking until read); past the plan's end it
    repeats the last batch (DALI prefetches beyond the batches the loader takes)."""

    def __init__(self, files: ShardFiles, plan: ChunkPlan, sample: np.ndarray, table, batch_size: int, ahead: int,
                 threads: int):
        """`sample`: the table rows of the slots, in read order (a multiple of `batch_size` slots); `table`: a
        `samples.SampleTable` (keys, shard, offset, size, source_label)."""
        self.files, self.plan, self.sample, self.table = files, plan, sample, table
        self.shard, self.offset, self.size = table.shard[sample], table.offset[sample], table.size[sample]
        self.S, self.ahead = batch_size, max(1, ahead)
        self.batches = len(sample) // batch_size
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="frostline-read")
        self._lock = threading.Lock()
        self._chunks: dict[int, Future] = {}
        self._left = plan.uses.copy()
        self._pending: dict[int, list[Future]] = {}
        self._submitted = 0
        self._last: list[Sample] | None = None
        self.error: BaseException | None = None

    def _chunk(self, c: int) -> bytes:
        with self._lock:
            fut = self._chunks.get(c)
            mine = fut is None
            if mine:
                fut = self._chunks[c] = Future()
        if mine:
            try:
                fut.set_result(self.files.read(int(self.plan.shard[c]), int(self.plan.start[c]),
                                               int(self.plan.end[c])))
            except BaseException as e:  # handed to every waiter
                fut.set_exception(e)
        return fut.result()

    def _load(self, s: int) -> Sample:
        c = int(self.plan.chunk[s])
        try:
            data = self._chunk(c)
        finally:
            with self._lock:
                self._left[c] -= 1
                if self._left[c] == 0:
                    self._chunks.pop(c, None)
        a = int(self.offset[s] - self.plan.start[c])
        span = memoryview(data)[a:a + int(self.size[s])]
        row = int(self.sample[s])
        return check(span, self.table, row, self.files.urls)

    def _submit_until(self, i: int) -> None:
        while self._submitted <= min(i, self.batches - 1):
            b = self._submitted
            self._pending[b] = [self._pool.submit(self._load, s) for s in range(b * self.S, (b + 1) * self.S)]
            self._submitted += 1

    def batch(self, i: int) -> list[Sample]:
        if i >= self.batches:
            if self._last is None:
                raise RuntimeError("the feed has no batch to repeat")
            return self._last
        self._submit_until(i + self.ahead)
        futures = self._pending.pop(i)
        try:
            out = [f.result() for f in futures]
        except BaseException as e:
            self.error = e
            raise
        self._last = out
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
