#!/usr/bin/env python
"""Benchmark `make_shards --merge`: Arrow's sort on one chunk against the per-row Python sort it replaced.

Writes a store of manifest fragments as `make_shards` leaves them under `_work/` (one Parquet fragment per
shard, `--rows` samples each, plus a few rejects; three splits whose order is not the alphabetical one),
then times the whole merge (read the fragments, sort, write the three tables; wall and CPU seconds of this
process, the CPU figure being the one that holds on a busy machine) with today's code and with
the baseline: the same reads, then Python's `sorted` with a per-row `.as_py()` key on the many-chunk table
(the code before issue 15). Both must give byte-identical `manifest.parquet` and `rejects.parquet`.

    python tools/bench/merge.py --fragments 500,1000,2000 --rows 480 [--baseline-max 2000]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shards import manifest as mf  # noqa: E402
from shards.cli import run, setup_logging, tool_parser  # noqa: E402
from shards.convert import SETTINGS, WORK, merge  # noqa: E402
from shards.storage import Store  # noqa: E402

SPLITS = ["train", "val", "test"]
CLASSES = [f"class {i}" for i in range(400)]


def write_fragments(out: str, fragments: int, rows: int, rejects_per: int = 2, seed: int = 0) -> None:
    """A finished one-part conversion's `_work/` folder with `fragments` fragments of `rows` rows each."""
    store = Store(out)
    rng = np.random.default_rng(seed)
    settings = {"dataset": "k400", "codec": "vp9", "fps": 30.0, "short_side": 256, "keyframe_interval": 16,
                "shard_size": 512_000_000, "splits": SPLITS, "limit": None, "seed": seed, "parts": 1,
                "classes": CLASSES}
    store.write_bytes(SETTINGS, json.dumps(settings, sort_keys=True, indent=1).encode())
    schema = mf.manifest_schema("k400")
    per_split = [fragments * 8 // 10, fragments // 10]
    per_split.append(fragments - sum(per_split))
    n = 0
    for split, count in zip(SPLITS, per_split):
        for k in range(count):
            shard = f"{split}-{k:06d}"
            sizes = rng.integers(20_000, 60_000, rows)
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            labels = rng.integers(0, len(CLASSES), rows).astype(np.int32)
            keys = [f"{split[:2]}{n + i:07d}x{rng.integers(1 << 30):08x}" for i in range(rows)]
            table = pa.table({
                "key": keys, "dataset": ["k400"] * rows, "split": [split] * rows, "shard": [shard + ".tar"] * rows,
                "offset": offsets, "size": sizes, "label": labels,
                "class_name": [CLASSES[i] for i in labels], "source_path": [f"{split}/{k}.mp4" for k in keys],
                "video_id": keys, "num_frames": np.full(rows, 300, np.int32), "fps": np.full(rows, 30.0),
                "source_fps": np.full(rows, 29.97), "width": np.full(rows, 340, np.int32),
                "height": np.full(rows, 256, np.int32), "duration_s": np.full(rows, 10.0), "codec": ["vp9"] * rows,
                "bytes": sizes - 2048, "sha256": [f"{i:064x}" for i in range(n, n + rows)],
                "fragment_offsets": [[0, 4096]] * rows, "fragment_frames": [[0, 16]] * rows,
                "time_start": np.zeros(rows, np.int32), "time_end": np.full(rows, 10, np.int32),
            }, schema=schema).replace_schema_metadata({b"consumed": str(rows + rejects_per).encode()})
            mf.write_table(store, f"{WORK}/{shard}.manifest.parquet", table)
            rej = pa.Table.from_pylist([
                {"video_id": f"bad{n + j}", "source_path": f"{split}/bad{n + j}.mp4", "split": split,
                 "class_name": CLASSES[0], "reason": "missing", "key": f"bad{rng.integers(1 << 40):010x}",
                 "dataset": "k400", "label": 0} for j in range(rejects_per)], schema=mf.reject_schema())
            mf.write_table(store, f"{WORK}/{shard}.rejects.parquet", rej)
            n += rows
    store.write_bytes(f"{WORK}/part-1-of-1.done", b"")


def merge_baseline(out: str) -> tuple[pa.Table, pa.Table]:
    """The merge before issue 15: per-row `.as_py()` sort keys on the concatenated (many-chunk) tables."""
    store = Store(out)
    settings = json.loads(store.read_bytes(SETTINGS))
    names = [f for f in store.list(WORK) if f.endswith(".manifest.parquet")]
    split_order = {s: i for i, s in enumerate(settings["splits"])}
    rows = [mf.read_table(store, rel).replace_schema_metadata(None) for rel in names]
    rejects = [mf.read_table(store, rel.replace(".manifest.", ".rejects.")) for rel in names]
    schema = mf.manifest_schema(settings["dataset"], {k: v for k, v in settings.items() if k != "classes"})
    manifest = pa.concat_tables([t.cast(schema.remove_metadata()) for t in rows])
    order = sorted(range(manifest.num_rows), key=lambda i: (
        split_order.get(manifest["split"][i].as_py(), 0), manifest["shard"][i].as_py(), manifest["offset"][i].as_py()))
    manifest = manifest.take(pa.array(order, pa.int64())).replace_schema_metadata(schema.metadata)
    rej = pa.concat_tables(rejects)
    rej_order = sorted(range(rej.num_rows), key=lambda i: (
        split_order.get(rej["split"][i].as_py(), 0), rej["key"][i].as_py()))
    rej = rej.take(pa.array(rej_order, pa.int64()))
    return manifest, rej


def main(argv=None) -> int:
    p = tool_parser(__doc__)
    p.add_argument("--fragments", default="500,1000,2000", help="comma-separated fragment counts")
    p.add_argument("--rows", type=int, default=480, help="rows per fragment (default 480: K400 has 240k at 500)")
    p.add_argument("--baseline-max", type=int, default=500, help="skip the baseline above this many fragments")
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    print(f"{'fragments':>9} {'rows':>9} {'merge_s':>8} {'merge_cpu_s':>11} {'baseline_s':>10} {'baseline_cpu_s':>14} "
          f"{'speedup':>8} {'identical':>9}", flush=True)
    for fragments in (int(x) for x in args.fragments.split(",")):
        with tempfile.TemporaryDirectory(prefix="frostline-bench-merge-") as out:
            write_fragments(out, fragments, args.rows)
            t0, c0 = time.perf_counter(), time.process_time()
            manifest, rejects = merge(out)
            new_s, new_cpu = time.perf_counter() - t0, time.process_time() - c0
            base_s, base_cpu, same = float("nan"), float("nan"), "-"
            if fragments <= args.baseline_max:
                t0, c0 = time.perf_counter(), time.process_time()
                old_m, old_r = merge_baseline(out)
                base_s, base_cpu = time.perf_counter() - t0, time.process_time() - c0
                store = Store(out)
                same = "yes" if (mf.table_bytes(old_m) == store.read_bytes(mf.MANIFEST)
                                 and mf.table_bytes(old_r) == store.read_bytes(mf.REJECTS)) else "NO"
            print(f"{fragments:>9} {manifest.num_rows:>9} {new_s:>8.2f} {new_cpu:>11.2f} {base_s:>10.2f} "
                  f"{base_cpu:>14.2f} {base_s / new_s:>7.1f}x {same:>9}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(main, prog="bench/merge"))
