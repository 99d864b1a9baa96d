"""Convert a dataset as distributed into tar shards, DALI index files and Parquet manifests.

The walk: `sources` -> ordered records -> worker processes (`transcode`) -> `writer` (one shard at a time,
committed atomically) -> a per-shard manifest fragment under `_work/` -> at the end, `manifest.parquet`,
`classes.parquet` and `rejects.parquet`.

Resumable: records are processed in a fixed order (sorted by key, then shuffled by `seed`) and each
shard closes at a byte size, so the sample-to-shard assignment is deterministic. A shard counts as done
when its fragment `_work/{shard}.manifest.parquet` exists (written after the tar and index); a re-run
skips the records of done shards and resumes with the next shard, exactly where an uninterrupted run
would be. `--part I/N` keeps the records whose key hashes to I and numbers its shards I-1, I-1+N, ...,
so N machines write disjoint shards into one `--out`; the last part to finish (or `merge`) writes the manifests.

One live run per part: each part holds the lock `_work/part-I-of-N.lock` (see `shards.storage.lock`: host, PID, start
time; a lock left by a killed run is taken over), and `merge` holds `_work/merge.lock`. The lock is taken
before anything is written, so a refused run changes nothing. Worker processes die with their parent
(`shards.storage.orphans`), and a run first removes the scratch files its killed predecessor left. A run that
ends any other way (finished, failed, or stopped by a signal: `shards.cluster.stop_on_signals`) removes its
scratch files and releases its lock on the way out; its workers ignore SIGTERM and SIGINT (a scheduler signals
every process of the job) and are killed by the parent when it stops early.
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import json
import multiprocessing
import os
import random
import re
import signal
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from . import manifest as mf
from .cli import Failure
from .cluster import usable_cpus
from .storage.lock import RunLock
from .storage.orphans import die_with_parent
from .records import VideoRecord
from .sources import load
from .storage import Store
from .transcode import DEFAULT_KEYFRAME_INTERVAL, EncodeOptions, StreamInfo, VideoError, quiet_ffmpeg, transcode
from .writer import ShardBuilder, sample_members, shard_name, tar_bytes

WORK = "_work"
SETTINGS = f"{WORK}/settings.json"
READ_THREADS = 8   # concurrent fragment reads in a merge from object storage (latency-bound)
MERGE_WAIT_S = 3600.0   # how long a finishing part waits for another part's merge


class SettingError(ValueError):
    """A conversion setting that cannot be used (a size, a part, a limit); the message names it."""


class ConversionError(Failure, RuntimeError):
    """The output folder cannot take this conversion (other settings, other videos, unfinished parts)."""


@dataclass
class ConvertSummary:
    """What a conversion produced (all shards of this part, including ones finished by earlier runs)."""

    dataset: str
    out: str
    samples: int = 0
    rejects: dict[str, int] = field(default_factory=dict)   # reason category -> count
    bytes: int = 0                                         # bytes of the stored streams
    shards: int = 0
    elapsed_s: float = 0.0
    processed: int = 0                                     # videos handled by this run (not skipped as done)
    resumed_shards: int = 0                                # shards found done and skipped
    merged: bool = False                                   # manifest.parquet written
    workers: int = 0                                       # parallel videos (default: shards.cluster.usable_cpus)

    @property
    def videos_per_s(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def __str__(self) -> str:
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejects.items())) or "none"
        lines = [
            f"dataset      {self.dataset} -> {self.out}",
            f"samples      {self.samples}",
            f"rejects      {sum(self.rejects.values())} ({rej})",
            f"bytes        {self.bytes} ({self.bytes / 2 ** 20:.1f} MiB of video)",
            f"shards       {self.shards} ({self.resumed_shards} already done)",
            f"elapsed      {self.elapsed_s:.1f} s",
            f"videos/s     {self.videos_per_s:.2f} ({self.processed} videos this run, {self.workers} "
            f"worker{'s' if self.workers != 1 else ''})",
            f"manifest     {'written' if self.merged else 'not yet: waiting for the other parts (or run --merge)'}",
        ]
        return "\n".join(lines)


def parse_size(text: str | int) -> int:
    """'512MB' / '1.5GB' / '800k' / 4096 -> bytes (decimal units; KiB/MiB/GiB are binary)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*", str(text).lower())
    if not m:
        raise SettingError(f"cannot read size {text!r}; write e.g. 512MB, 2GB, 64MiB")
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base ** " kmgt".index(m.group(2) or " "))


FPS_RANGE = (1.0, 240.0)   # output frame rates make_shards accepts (frames per second)
MAX_KEYFRAME_INTERVAL = 3600


def check_fps(fps) -> float:
    """The output frame rate: a finite number within FPS_RANGE (below it every clip has next to no frames; above
    it the encoder would write millions of duplicated frames)."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise SettingError(f"--fps must be a number, got {fps!r}") from None
    low, high = FPS_RANGE
    if not low <= value <= high:     # also refuses nan and inf
        raise SettingError(f"--fps must be from {low:g} to {high:g} frames per second, got {fps}")
    return value


def parse_part(part: str | tuple[int, int] | None) -> tuple[int, int]:
    """'2/8' -> (2, 8); None -> (1, 1)."""
    if part is None:
        return 1, 1
    if isinstance(part, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", part)
        if not m:
            raise SettingError(f"--part must look like I/N (e.g. 3/8), got {part!r}")
        part = int(m.group(1)), int(m.group(2))
    i, n = part
    if not 1 <= i <= n:
        raise SettingError(f"--part I/N needs 1 <= I <= N, got {i}/{n}")
    return i, n


def in_part(key: str, i: int, n: int) -> bool:
    return n == 1 or int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % n == i - 1


ORDERS = ("shuffled", "by-class")


def order_records(records: list[VideoRecord], splits: list[str], seed: int, limit: int | None,
                  order: str = "shuffled") -> dict:
    """Records per split in conversion order: sorted by key, then shuffled by `seed` (mixes classes within
    shards); or, with `order="by-class"`, sorted by (label, key) and not shuffled: class after class, the layout of
    tar datasets written folder by folder (the worst case for a loader's shuffle)."""
    if order not in ORDERS:
        raise SettingError(f"the order must be one of {', '.join(ORDERS)}, got {order!r}")
    out = {}
    for split in splits:
        if order == "by-class":
            rs = sorted((r for r in records if r.split == split), key=lambda r: (r.label, r.key))
        else:
            rs = sorted((r for r in records if r.split == split), key=lambda r: r.key)
            random.Random(f"{seed}:{split}").shuffle(rs)
        out[split] = rs[:limit] if limit is not None else rs
    return out


# ---------------------------------------------------------------- worker side

def _work(args: tuple[VideoRecord, EncodeOptions]):
    """Runs in a worker process: (record, mp4 bytes, info) or (record, None, reject reason)."""
    record, opts = args
    if record.reject:
        return record, None, record.reject
    try:
        data, info = transcode(record.path, opts)
    except VideoError as e:
        return record, None, str(e)
    except Exception as e:  # a bug or an FFmpeg surprise must not stop the conversion of 650k videos
        return record, None, f"decode error at frame 0: {type(e).__name__}: {e}"
    return record, data, info


CRASHED = "decode error at frame 0: the decoder crashed (its worker process died)"


def _init_worker(parent_pid: int) -> None:
    die_with_parent(parent_pid)   # a kill -9 of make_shards takes its workers (and so the resource tracker) along
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)   # the parent decides: it kills its workers when a signal stops it
    quiet_ffmpeg()


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(os.getpid(),))


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill the workers of `pool` now: the run is stopping, and the videos they are on would be thrown away."""
    for process in list((pool._processes or {}).values()):   # no public way before Python 3.14's kill_workers()
        process.kill()


def _isolated(record: VideoRecord, opts: EncodeOptions):
    """Convert one video in a process of its own: if FFmpeg crashes on it, it alone becomes a reject."""
    with _pool(1) as pool:
        try:
            return pool.submit(_work, (record, opts)).result()
        except BrokenProcessPool:
            return record, None, CRASHED


def _results(items: list, workers: int, opts: EncodeOptions):
    """Yield worker results in input order, with at most a few videos in flight per worker.

    With workers=1 everything runs in this process. Otherwise a worker that dies (a decoder crash on a
    corrupt file) breaks the pool: the videos in flight are then retried one by one, so only the one that
    crashes becomes a reject.
    """
    if workers <= 1:
        quiet_ffmpeg()
        for r in items:
            yield _work((r, opts))
        return
    window = workers * 4
    it = iter(items)
    pool = _pool(workers)
    try:
        pending = collections.deque((r, pool.submit(_work, (r, opts))) for r in itertools.islice(it, window))
        while pending:
            record, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                result = _isolated(record, opts)
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _pool(workers)
                pending = collections.deque((r, pool.submit(_work, (r, opts))) for r, _ in pending)
            yield result
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_work, (nxt, opts))))
    except BaseException:    # stopped (a signal, an error, or the consumer closed this generator early)
        _kill_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- rows

def manifest_row(record: VideoRecord, info: StreamInfo) -> dict:
    row = {"key": record.key, "dataset": record.dataset, "split": record.split, "label": record.label,
           "class_name": record.class_name, "source_path": record.source_path, "video_id": record.video_id}
    row.update(info.as_dict())
    row.update(record.extras)
    return row


def reject_row(record: VideoRecord, reason: str) -> dict:
    return {"video_id": record.video_id, "source_path": record.source_path, "split": record.split,
            "class_name": record.class_name, "reason": reason, "key": record.key, "dataset": record.dataset,
            "label": record.label}


def reason_category(reason: str) -> str:
    """'decode error at frame 17: ...' -> 'decode error' (the summary counts rejects by these)."""
    return re.sub(r" at frame \d+$", "", reason.split(":", 1)[0].strip())


# ---------------------------------------------------------------- conversion

def convert_dataset(dataset: str, root: str, out: str, *, workers: int | None = None, codec: str = "vp9",
                    short_side: int = 256, fps: float = 30, shard_size: str | int = "512MB",
                    splits: list[str] | str | None = None, limit: int | None = None,
                    part: str | tuple[int, int] | None = None, seed: int = 0, progress: bool = True,
                    keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL, order: str = "shuffled",
                    test_fraction: float | None = None) -> ConvertSummary:
    """Convert `root` (layout of `dataset`) into shards and manifests under `out` (folder or s3:// URL).
    `test_fraction`: the share of each class's videos a folder dataset puts in split `test` (drawn by `seed`).

    Re-running the same call after a crash resumes it. See the module docstring for the guarantees.
    """
    start = time.time()
    if isinstance(splits, str):
        splits = [s for s in splits.split(",") if s]
    part_i, part_n = parse_part(part)
    if not 1 <= int(keyframe_interval) <= MAX_KEYFRAME_INTERVAL:
        raise SettingError(f"--keyframe-interval must be from 1 to {MAX_KEYFRAME_INTERVAL}, got {keyframe_interval}")
    opts = EncodeOptions(codec=codec, fps=check_fps(fps), short_side=int(short_side),
                         keyframe_interval=int(keyframe_interval))
    max_bytes = parse_size(shard_size)
    if max_bytes <= 0:
        raise SettingError(f"the shard size must be positive, got {shard_size!r}")
    if limit is not None and limit < 1:
        raise SettingError(f"--limit must be at least 1 (videos per split), got {limit}")
    if workers is not None and workers < 1:
        raise SettingError(f"--workers must be at least 1, got {workers}")
    workers = workers or usable_cpus()

    index = load(dataset, root, splits, test_fraction=test_fraction, seed=seed)
    store = Store(out, tmp_name=f"_tmp/part-{part_i}-of-{part_n}")
    settings = {"dataset": dataset, "codec": codec, "fps": opts.fps, "short_side": opts.short_side,
                "keyframe_interval": opts.keyframe_interval, "shard_size": max_bytes, "splits": index.splits,
                "limit": limit, "seed": seed, "parts": part_n, "classes": index.classes}
    if order != "shuffled":          # only then, so that conversions begun before `order` existed still resume
        settings["order"] = order
    if test_fraction:
        settings["test_fraction"] = test_fraction
    with part_lock(store, part_i, part_n):
        _check_settings(store, settings)
        store.clean_tmp()    # scratch files of a killed run of this part (the lock says none is live)
        try:
            summary = _convert_locked(store, dataset, index, (part_i, part_n), opts, max_bytes, workers, seed,
                                      limit, progress, order)
        finally:
            store.clean_tmp()    # however the run ends (a signal too), it leaves no scratch file
    summary.elapsed_s, summary.workers = time.time() - start, workers
    return summary


def part_lock(store: Store, part_i: int, part_n: int) -> RunLock:
    """The lock of one part of a conversion into `store`: `--part` runs share `--out`, each holds its own."""
    what = store.url if part_n == 1 else f"{store.url} (part {part_i}/{part_n})"
    return RunLock(store.url_of(f"{WORK}/part-{part_i}-of-{part_n}.lock"), what=what)


def _convert_locked(store, dataset, index, part, opts, max_bytes, workers, seed, limit, progress,
                    order="shuffled") -> ConvertSummary:
    part_i, part_n = part
    ordered = order_records(index.records, index.splits, seed, limit, order)
    summary = ConvertSummary(dataset, store.url)
    plan = []  # (split, number of its done shards in this part, records still to do)
    for split in index.splits:
        mine = [r for r in ordered[split] if in_part(r.key, part_i, part_n)]
        done_shards, done_records = _resume_point(store, split, mine, part, summary)
        plan.append((split, done_shards, mine[done_records:]))

    todo = sum(len(records) for _, _, records in plan)
    bar = _progress(todo, progress, dataset)
    try:
        for split, k, records in plan:
            if records:
                _convert_split(store, dataset, split, k, records, part, opts, max_bytes, workers, summary, bar)
    finally:
        if bar is not None:
            bar.close()
    summary.processed = todo

    store.write_bytes(f"{WORK}/part-{part_i}-of-{part_n}.done", b"")
    if all(store.exists(f"{WORK}/part-{i}-of-{part_n}.done") for i in range(1, part_n + 1)):
        # the last part to finish writes the manifests; two parts that finish together both merge, one after
        # the other (the second waits for the first's merge lock), and write the same bytes
        merge(store.url, wait_s=MERGE_WAIT_S)
        summary.merged = True
    store.clean_tmp()
    return summary


def _shard_number(split: str, k: int, part: tuple[int, int]) -> str:
    """Name of this part's k-th shard of `split`: parts interleave, part I/N writes I-1, I-1+N, I-1+2N, ..."""
    part_i, part_n = part
    return shard_name(split, k * part_n + part_i - 1)


def _resume_point(store: Store, split: str, records: list[VideoRecord], part: tuple[int, int],
                  summary: ConvertSummary) -> tuple[int, int]:
    """(shards done, records consumed by them) for `split`, from the fragments an earlier run committed."""
    k = done = 0
    while (frag := _fragment(store, _shard_number(split, k, part))) is not None:
        rows, rejects, consumed = frag
        expected = sorted(r.key for r in records[done:done + consumed])
        if expected != sorted(row["key"] for row in rows + rejects):
            raise ConversionError(f"{store.url}: the finished shard {_shard_number(split, k, part)} holds other videos "
                               "than this run would write there; convert into a fresh --out")
        _count(summary, rows, rejects, has_tar=bool(rows))
        summary.resumed_shards += 1
        k, done = k + 1, done + consumed
    return k, done


def _convert_split(store, dataset, split, k, records, part, opts, max_bytes, workers, summary, bar):
    """Fill shards k, k+1, ... of `split` with `records` in order, committing each when full."""
    builder = None
    rows, rejects, consumed = [], [], 0
    results = _results(records, workers, opts)

    def close():
        nonlocal builder, rows, rejects, consumed, k
        name = _shard_number(split, k, part)
        if builder is not None:
            builder.commit()
        _write_fragment(store, dataset, name, rows, rejects, consumed)
        _count(summary, rows, rejects, has_tar=builder is not None)
        builder, rows, rejects, consumed, k = None, [], [], 0, k + 1

    try:
        for record, data, info in results:
            if data is None:
                rejects.append(reject_row(record, info))
            else:
                meta = manifest_row(record, info)
                members = sample_members(record.key, data, meta, record.label, info.num_frames)
                need = tar_bytes(members)
                if builder is not None and builder.nbytes + need > max_bytes:
                    close()
                if builder is None:
                    builder = ShardBuilder(store, _shard_number(split, k, part))
                offset, size = builder.add(record.key, members)
                rows.append({**meta, "shard": builder.tar_name, "offset": offset, "size": size})
            consumed += 1
            if bar is not None:
                bar.set_postfix(rejects=sum(summary.rejects.values()) + len(rejects), refresh=False)
                bar.update(1)
        if consumed:
            close()
    except BaseException:
        results.close()    # a stopped run: its workers are killed now, not after their videos
        if builder is not None:
            builder.abandon()
        raise


def _count(summary: ConvertSummary, rows: list[dict], rejects: list[dict], has_tar: bool) -> None:
    summary.samples += len(rows)
    summary.bytes += sum(r["bytes"] for r in rows)
    summary.shards += int(has_tar)
    for r in rejects:
        cat = reason_category(r["reason"])
        summary.rejects[cat] = summary.rejects.get(cat, 0) + 1


def _progress(total: int, enabled: bool, dataset: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc=f"make_shards {dataset}", dynamic_ncols=True)


# what `_work/settings.json` must hold, by key: the type a value must have (merge reads these)
_SETTING_TYPES = {"dataset": str, "parts": int, "splits": list, "classes": list}


def read_settings(store: Store) -> dict:
    """`_work/settings.json` of the conversion in `store`, checked: a damaged file is an error naming it."""
    url = store.url_of(SETTINGS)
    try:
        settings = json.loads(store.read_bytes(SETTINGS).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ConversionError(f"{url}: damaged, not JSON ({str(e).splitlines()[0][:80]}); it records the "
                              f"settings of the conversion in {store.url}: restore it, or convert into a fresh "
                              "--out") from None
    if not isinstance(settings, dict):
        raise ConversionError(f"{url}: damaged, expected a JSON object of conversion settings")
    for key, kind in _SETTING_TYPES.items():
        value = settings.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (key == "parts" and value < 1):
            raise ConversionError(f"{url}: damaged, key {key!r} is {json.dumps(value)[:60]}, expected "
                                  f"{'a positive integer' if kind is int else 'a ' + kind.__name__}")
    if not all(isinstance(c, str) for c in settings["classes"] + settings["splits"]):
        raise ConversionError(f"{url}: damaged, 'classes' and 'splits' must be lists of strings")
    return settings


def _check_settings(store: Store, settings: dict) -> None:
    """A resumed run must use the settings of the first one; otherwise its shards would not fit together."""
    if store.exists(SETTINGS):
        old = read_settings(store)
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            shown = {k: v for k, v in diff.items() if k != "classes"} or {"classes": "differ"}
            raise ConversionError(f"{store.url} already holds a conversion with other settings "
                               f"(was, now): {shown}; use the same settings to resume, or a fresh --out")
    else:
        store.write_bytes(SETTINGS, json.dumps(settings, sort_keys=True, indent=1).encode())


# ---------------------------------------------------------------- fragments and merge

def _write_fragment(store: Store, dataset: str, name: str, rows: list[dict], rejects: list[dict],
                    consumed: int) -> None:
    """Record a finished shard: its rejects, then its manifest rows (the commit marker, written last)."""
    mf.write_table(store, f"{WORK}/{name}.rejects.parquet", mf.rows_to_table(rejects, mf.reject_schema()))
    table = mf.rows_to_table(rows, mf.manifest_schema(dataset))
    table = table.replace_schema_metadata({b"consumed": str(consumed).encode()})
    mf.write_table(store, f"{WORK}/{name}.manifest.parquet", table)


def _fragment(store: Store, name: str):
    """(manifest rows, reject rows, records consumed) of a finished shard, or None if it is not finished."""
    rel = f"{WORK}/{name}.manifest.parquet"
    if not store.exists(rel):
        return None
    table = mf.read_table(store, rel)
    rejects = mf.read_table(store, f"{WORK}/{name}.rejects.parquet")
    try:
        consumed = int((table.schema.metadata or {})[b"consumed"])
    except (KeyError, ValueError):
        raise ConversionError(f"{store.url_of(rel)}: damaged (no 'consumed' count in its metadata); remove it and "
                              "its shard, then rerun to convert that shard again") from None
    return table.to_pylist(), rejects.to_pylist(), consumed


def merge(out: str, wait_s: float = 0.0) -> tuple[pa.Table, pa.Table]:
    """Combine the fragments of all parts into `manifest.parquet`, `rejects.parquet` and `classes.parquet`.

    Rows are ordered by split (in the dataset's order), shard, then offset; rejects by split, then key.
    Raises when a part is missing, or (after `wait_s` seconds) when another merge of `out` is running. The sort is
    Arrow's stable `sort_indices` on one combined chunk: linear in the fragments (2000 fragments x 480 rows: see
    docs/benchmarks/2026-12-cpu.md, "Merging manifests").
    """
    store = Store(out, tmp_name="_tmp/merge")
    if not store.exists(SETTINGS):
        raise FileNotFoundError(f"{store.url_of(SETTINGS)} not found: {store.url} holds no conversion")
    lock = RunLock(store.url_of(f"{WORK}/merge.lock"), what=f"{store.url} (merge)").acquire(wait_s)
    try:
        return _merge_locked(store)
    finally:
        store.clean_tmp()
        lock.release()


def _merge_locked(store: Store) -> tuple[pa.Table, pa.Table]:
    settings = read_settings(store)
    n = settings["parts"]
    missing = [i for i in range(1, n + 1) if not store.exists(f"{WORK}/part-{i}-of-{n}.done")]
    if missing:
        raise ConversionError(f"cannot merge {store.url}: parts {missing} of {n} have not finished")
    names = [f for f in store.list(WORK) if f.endswith(".manifest.parquet")]
    rows = [t.replace_schema_metadata(None) for t in _read_all(store, names)]
    rejects = _read_all(store, [rel.replace(".manifest.", ".rejects.") for rel in names])
    schema = mf.manifest_schema(settings["dataset"], {k: v for k, v in settings.items() if k != "classes"})
    plain = schema.remove_metadata()
    manifest = pa.concat_tables([t.cast(plain) for t in rows]) if rows else plain.empty_table()
    manifest = sort_rows(manifest, settings["splits"], ["shard", "offset"]).replace_schema_metadata(schema.metadata)
    rej = pa.concat_tables(rejects) if rejects else mf.reject_schema().empty_table()
    rej = sort_rows(rej, settings["splits"], ["key"])
    mf.write_table(store, mf.CLASSES, mf.classes_table(settings["classes"]))
    mf.write_table(store, mf.REJECTS, rej)
    mf.write_table(store, mf.MANIFEST, manifest)
    store.clean_tmp()
    return manifest, rej


def _read_all(store: Store, names: list[str]) -> list[pa.Table]:
    """The Parquet files `names` of `store`, in order, fetched and decoded by a few threads (one request each
    on S3, where a merge of 2000 fragments would otherwise wait for 4000 round trips in a row). On local disk
    decoding is the cost, so one thread per CPU this process may use (`usable_cpus`): 2000 fragments took 8.3 s
    with 8 threads, 6.2 s with 2, on the project's 2-core machine."""
    if len(names) < 2:
        return [mf.read_table(store, rel) for rel in names]
    threads = READ_THREADS if store.remote else usable_cpus()
    with ThreadPoolExecutor(min(threads, len(names))) as pool:
        return list(pool.map(lambda rel: mf.read_table(store, rel, check=False), names))


def sort_rows(table: pa.Table, split_order: list[str], then: list[str]) -> pa.Table:
    """`table` in one chunk, sorted by the rank of its `split` in `split_order` (unknown splits rank 0), then
    by the columns `then`."""
    table = table.combine_chunks()
    rank = pc.fill_null(pc.index_in(table["split"], value_set=pa.array(split_order, pa.string())), 0)
    keyed = table.append_column("__split_rank", rank)
    order = pc.sort_indices(keyed, sort_keys=[("__split_rank", "ascending")] + [(c, "ascending") for c in then])
    return table.take(order)
