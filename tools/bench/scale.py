"""The loader at dataset scale: set-up, first batch, steady clips/s, files written, requests per epoch and peak
memory, for growing splits of tiny real samples, from local disk and from a loopback S3 server, per shuffle mode.

    python tools/bench/scale.py --out /tmp/scale [--sizes 1000,10000,50000,240000] [--no-s3]

The store is written once at the largest size by the project's ShardBuilder (real tars, .idx, manifest; 1000
samples per shard, every sample the same tiny VP9 clip) and each size's split takes its first N samples (whole
shards: a dense split). S3 is `tools/s3_server.py` (moto) on 127.0.0.1, filled before it listens; its request
counts are read from the server. Each configuration runs in a fresh process (peak memory is that process's
maximum RSS); files written are those that appear in its private TMPDIR. "requests/epoch" is a full epoch's reads
(read only, no decoding) counted by the reader and checked against the server's count for the whole process.
The baseline is the previous read path (per-epoch DALI index files + `fn.readers.webdataset`), run up to
`--baseline-max` samples. Last line: `epoch_setup_s_at_240k: X`, the slower of local and S3 of set-up plus first
batch at default settings (at the largest size run, named in the line if it is not 240k).

`--train-seconds S` also trains on each size's split, from local disk and S3: `model/train.py` with
`model/configs/demo.yaml` (a randomly initialised world CLIP as student and teacher, default loader settings), the
split as `base2novel/scale/train_s1.parquet`, for S seconds after its first optimiser step, then killed. It prints
the seconds from starting the process to that first step, the steps it ran and the S3 requests it made.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shards.cli import setup_logging, tool_parser  # noqa: E402

PER_SHARD = 1000
BUCKET = "scale"


# ------------------------------------------------------------------------------------------------ the store

def tiny_video() -> bytes:
    """An 8-frame 32x24 VP9 clip in MP4 (about 1 KB)."""
    import numpy as np

    from shards.generated.synthetic import vp9_mp4

    ramp = np.linspace(0, 255, 32, dtype=np.float32)
    frames = np.stack([np.broadcast_to(((ramp + 16 * t) % 256)[None, :, None], (24, 32, 3))
                       for t in range(8)]).astype(np.uint8)
    return vp9_mp4(frames, crf="40")


def build_store(folder: str, n: int, classes: int = 400) -> None:
    """n samples in shards of PER_SHARD, with .idx files and a manifest (the store's real formats)."""
    import pyarrow as pa

    from shards.manifest import MANIFEST, classes_table, manifest_schema, write_table
    from shards.storage import Store
    from shards.writer import ShardBuilder, sample_members

    if os.path.exists(os.path.join(folder, MANIFEST)):
        return
    store = Store(folder)
    video = tiny_video()
    cols: dict[str, list] = {k: [] for k in ("key", "shard", "offset", "size", "label")}
    for s in range(-(-n // PER_SHARD)):
        b = ShardBuilder(store, f"train-{s:06d}")
        for i in range(s * PER_SHARD, min(n, (s + 1) * PER_SHARD)):
            key = f"v{i:07d}"
            off, size = b.add(key, sample_members(key, video, {"key": key}, i % classes, 8))
            for k, v in zip(cols, (key, b.tar_name, off, size, i % classes)):
                cols[k].append(v)
        b.commit()
    schema = manifest_schema("k400")
    m = len(cols["key"])
    data = {f.name: (pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(m, f.type)) for f in schema}
    data["num_frames"] = pa.array([8] * m, pa.int32())
    data["split"] = pa.array(["train"] * m)
    data["dataset"] = pa.array(["k400"] * m)
    data["class_name"] = pa.array([f"class {x}" for x in cols["label"]])
    write_table(store, MANIFEST, pa.table(data, schema=schema))
    write_table(store, "classes.parquet", classes_table([f"class {c}" for c in range(classes)]))


def write_split(store: str, n: int, shard_url_prefix: str, path: str) -> str:
    """A split file over the store's first n samples, shards named under `shard_url_prefix`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from shards.manifest import read_manifest

    m = read_manifest(store).slice(0, n)
    shard = pc.binary_join_element_wise(shard_url_prefix, m.column("shard"), "")
    rows = pa.table({"key": m.column("key"), "shard": shard, "offset": m.column("offset"),
                     "size": m.column("size"), "label": m.column("label"), "class_name": m.column("class_name"),
                     "source_label": m.column("label"), "num_frames": m.column("num_frames"),
                     "fragment_offsets": m.column("fragment_offsets"),
                     "fragment_frames": m.column("fragment_frames")})
    pq.write_table(rows.replace_schema_metadata({b"classes_file": b"classes.parquet"}), path)
    classes = pq.read_table(os.path.join(store, "classes.parquet"))
    pq.write_table(classes.append_column("prompt", classes.column("class_name")),
                   os.path.join(os.path.dirname(path), "classes.parquet"))
    return path


# ---------------------------------------------------------------------------------------------- one config

def _cfg(shuffle: str):
    from pipeline.loader import LoaderConfig

    return LoaderConfig(batch_size=8, num_frames=4, frame_stride=2, crop_size=24, short_side_range=(24, 28),
                        num_threads=2, shuffle=shuffle, seed=0)


def run_one(split: str, shuffle: str, batches: int, read_epoch: bool) -> dict:
    """In a fresh process: the measurements of one (split, shuffle) configuration. Set-up is timed after the
    imports a training process has done anyway (torch, DALI, pyarrow, the S3 client)."""
    import fsspec  # noqa: F401
    import nvidia.dali.fn  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import s3fs  # noqa: F401

    from pipeline.loader import build_loader
    from pipeline.order import shard_spread

    t0 = time.perf_counter()
    loader = build_loader(split, _cfg(shuffle))
    setup = time.perf_counter() - t0
    setup_requests = loader.files.requests
    it = iter(loader)
    t1 = time.perf_counter()
    next(it)
    first = time.perf_counter() - t1
    t2 = time.perf_counter()
    for _ in range(batches):
        next(it)
    steady = batches * loader.slots / (time.perf_counter() - t2)
    plan = loader.plan(0)
    mean, low = shard_spread(plan.sample, loader.table.shard)
    out = {"setup_s": setup, "first_batch_s": first, "clips_per_s": steady, "shuffle": loader.shuffle,
           "setup_requests": setup_requests, "spread64": mean, "spread64_min": low, "samples": len(loader.table)}
    del it
    if read_epoch:                       # a whole epoch's reads, without decoding
        plan = loader.plan(1)
        before = loader.files.requests
        feed = loader._feed(plan, 0)
        t3 = time.perf_counter()
        for b in range(feed.batches):
            feed.batch(b)
        feed.close()
        out["epoch_read_s"] = time.perf_counter() - t3
        out["requests_per_epoch"] = loader.files.requests - before
        out["chunks_peak_mb"] = feed.plan.peak_bytes / 2**20
    else:
        feed = loader._feed(loader.plan(1), 0)
        out["requests_per_epoch_planned"] = len(feed.plan.uses)
        feed.close()
    out["client_requests"] = loader.files.requests
    loader.close()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_baseline(split: str, cache: str) -> dict:
    """The previous read path: index files for the epoch's exact permutation (one per run of samples from one
    shard), then a DALI webdataset reader over them (reading only, no decoding), to its first batch."""
    import numpy as np
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    from pipeline.samples import load
    from shards.index import format_index, parse_index_table
    from shards.storage import Store

    t0 = time.perf_counter()
    table = load(split)
    entries = {}
    for s, url in enumerate(table.shards):
        folder, name = url.rsplit("/", 1)
        idx = parse_index_table(Store(folder).read_bytes(name[:-4] + ".idx").decode())
        by_off = dict(zip(idx.sample_offset.tolist(), idx.samples()))
        rows = np.flatnonzero(table.shard == s)
        for r in rows.tolist():
            entries[r] = by_off[int(table.offset[r])]
    order = np.random.default_rng([0, 0, 0xE90C]).permutation(len(table))
    runs = np.split(order, np.flatnonzero(np.diff(table.shard[order])) + 1)
    paths, index_paths = [], []
    for i, run in enumerate(runs):
        p = os.path.join(cache, f"{i:06d}.idx")
        with open(p, "w") as f:
            f.write(format_index(entries[r] for r in run.tolist()))
        paths.append(table.shards[table.shard[run[0]]])
        index_paths.append(p)
    written = time.perf_counter() - t0

    @pipeline_def(batch_size=8, num_threads=2, device_id=None)
    def graph():
        video, lbl, nfr = fn.readers.webdataset(paths=paths, index_paths=index_paths, ext=["mp4", "lbl", "nfr"],
                                                dtypes=[types.UINT8, types.INT32, types.INT32],
                                                random_shuffle=False)
        return video, lbl, nfr

    t1 = time.perf_counter()
    try:
        pipe = graph()
        pipe.build()
        pipe.run()
        error = None
    except Exception as e:  # reported in the table: the reason this path does not scale
        error = str(e).strip().splitlines()[0][:80]
    return {"setup_s": written, "first_batch_s": time.perf_counter() - t1, "files": len(index_paths),
            "error": error, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ----------------------------------------------------------------------------------------------- the driver

class S3:
    def __init__(self, store: str):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen([sys.executable, os.path.join(here, "s3_server.py"), "--port", str(self.port),
                                      "--fill", f"{BUCKET}/store={store}"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError("the S3 server did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    def counts(self, reset: bool = False) -> dict:
        req = urllib.request.Request(self.url + ("/_frostline/reset" if reset else "/_frostline/requests"),
                                     method="POST" if reset else "GET")
        return json.loads(urllib.request.urlopen(req).read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def child(args_list: list[str], env: dict) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-scale-tmp-")
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), *args_list], capture_output=True, text=True,
                           env={**env, "TMPDIR": tmp}, timeout=3600)
        if r.returncode != 0:
            return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][:100]}
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out["files_written"] = sum(len(f) for _, _, f in os.walk(tmp))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_run(split: str, name: str, out: str, seconds: float, env: dict, s3) -> dict:
    """model/train.py on `split` for `seconds` after its first step (see the module docstring)."""
    import pyarrow.parquet as pq

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    root = os.path.join(out, "train-splits", name)
    files = os.path.join(root, "base2novel", "scale")
    os.makedirs(files, exist_ok=True)
    shutil.copy(split, os.path.join(files, "train_s1.parquet"))
    shutil.copy(os.path.join(os.path.dirname(split), "classes.parquet"), os.path.join(files, "classes.parquet"))
    held_out = pq.read_table(split).slice(0, 24)          # evaluation is not what is measured here
    for f in ("eval_base.parquet", "eval_novel.parquet"):
        pq.write_table(held_out, os.path.join(files, f))
    run_dir = os.path.join(out, "train-runs", name)
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, os.path.join(repo, "model", "train.py"), "--config",
           os.path.join(repo, "model", "configs", "demo.yaml"), f"output_dir={run_dir}", f"data.splits={root}",
           "data.dataset=scale", "model.pretrained=null", "train.epochs=2", "train.warmup_epochs=1",
           "data.frame_stride=2", "train.log_every=100000"]
    if s3 is not None:
        s3.counts(reset=True)
    metrics = os.path.join(run_dir, "metrics.jsonl")
    with open(os.path.join(out, f"train-{name}.log"), "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while not (os.path.exists(metrics) and os.path.getsize(metrics)) and proc.poll() is None:
                time.sleep(0.05)
            first = time.perf_counter() - start
            if proc.poll() is None:
                try:
                    proc.wait(timeout=seconds)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            proc.kill()
            proc.wait()
    steps = sum(1 for _ in open(metrics)) if os.path.exists(metrics) else 0
    r = {"name": name, "first_step_s": first if steps else float("nan"), "steps": steps, "seconds": seconds,
         "requests": sum(s3.counts().values()) if s3 is not None else None}
    with open(os.path.join(out, f"train-{name}.log")) as f:
        said = [line for line in f if "training 2 epochs x" in line]
    r["steps_per_epoch"] = int(said[0].split(" x ")[1].split()[0]) if said else None
    return r


def main() -> None:
    ap = tool_parser(__doc__)
    ap.add_argument("--out", help="work folder (the store is kept there and reused)")
    ap.add_argument("--sizes", default="1000,10000,50000,240000")
    ap.add_argument("--shuffles", default="auto,sample,interleave,shard")
    ap.add_argument("--batches", type=int, default=8, help="batches timed for steady clips/s")
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--baseline-max", type=int, default=10000, help="largest size the previous read path runs at")
    ap.add_argument("--s3-exact-max", type=int, default=10000,
                    help="above this size an exact permutation on S3 reports its planned requests (one per sample) "
                         "instead of reading a whole epoch")
    ap.add_argument("--train-seconds", type=float, default=0,
                    help="also train (model/train.py) on each split for this long after its first step (0: off)")
    ap.add_argument("--one", nargs=4, metavar=("SPLIT", "SHUFFLE", "BATCHES", "READ_EPOCH"), help=argparse.SUPPRESS)
    ap.add_argument("--one-baseline", nargs=1, metavar="SPLIT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    setup_logging(args.quiet, args.verbose)
    if args.one:
        split, shuffle, batches, read_epoch = args.one
        print(json.dumps(run_one(split, shuffle, int(batches), read_epoch == "1")))
        return
    if args.one_baseline:
        print(json.dumps(run_baseline(args.one_baseline[0], tempfile.mkdtemp(prefix="frostline-idx-"))))
        return
    if not args.out:
        ap.error("give --out")
    sizes = [int(s) for s in args.sizes.split(",")]
    shuffles = args.shuffles.split(",")
    store = os.path.join(args.out, "store")
    t = time.perf_counter()
    build_store(store, max(sizes))
    print(f"store: {max(sizes)} samples in {-(-max(sizes) // PER_SHARD)} shards "
          f"({sum(os.path.getsize(os.path.join(store, f)) for f in os.listdir(store)) / 2**20:.0f} MB), "
          f"ready in {time.perf_counter() - t:.0f} s", flush=True)
    s3 = None if args.no_s3 else S3(store)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    if s3 is not None:
        env.update({"AWS_ENDPOINT_URL": s3.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"})
    rows = []
    head = (f"{'samples':>7} {'storage':<5} {'shuffle':<16} {'setup s':>7} {'1st batch s':>11} {'clips/s':>7} "
            f"{'files':>6} {'req setup':>9} {'req/epoch':>10} {'epoch read s':>12} {'peak MB':>7} "
            f"{'shards/64':>9} {'server req':>10}")
    print(head)
    print("-" * len(head))
    try:
        for n in sizes:
            for where in ("local",) + (() if s3 is None else ("s3",)):
                prefix = os.path.join(store, "") if where == "local" else f"s3://{BUCKET}/store/"
                folder = os.path.join(args.out, "splits", f"{where}-{n}")
                os.makedirs(folder, exist_ok=True)
                split = write_split(store, n, prefix, os.path.join(folder, "train.parquet"))
                configs = [("baseline", None)] if n <= args.baseline_max else []
                configs += [(m, m) for m in shuffles]
                for name, mode in configs:
                    if s3 is not None:
                        s3.counts(reset=True)
                    if mode is None:
                        r = child(["--one-baseline", split], env)
                    else:
                        exact = mode == "sample" or (mode == "auto" and where == "local")
                        read_epoch = not (where == "s3" and exact and n > args.s3_exact_max)
                        r = child(["--one", split, mode, str(args.batches), "1" if read_epoch else "0"], env)
                    server = sum(s3.counts().values()) if s3 is not None and where == "s3" else None
                    r.update(samples=n, storage=where, config=name, server_requests=server)
                    rows.append(r)
                    print(_row(r), flush=True)
        if args.train_seconds > 0:
            print(f"\ntraining: model/train.py, demo.yaml, random world CLIP, default loader settings, "
                  f"{args.train_seconds:g} s after the first step")
            print(f"{'samples':>7} {'storage':<7} {'steps/epoch':>11} {'first step s':>12} {'steps run':>9} "
                  f"{'S3 requests':>11}")
            for n in sizes:
                for where in ("local",) + (() if s3 is None else ("s3",)):
                    split = os.path.join(args.out, "splits", f"{where}-{n}", "train.parquet")
                    t = train_run(split, f"{where}-{n}", args.out, args.train_seconds, env,
                                  s3 if where == "s3" else None)
                    req = "-" if t["requests"] is None else str(t["requests"])
                    print(f"{n:>7} {where:<7} {t['steps_per_epoch'] or '-':>11} {t['first_step_s']:>12.2f} "
                          f"{t['steps']:>9} {req:>11}", flush=True)
    finally:
        if s3 is not None:
            s3.close()
    print(f"cores: {os.cpu_count()}   batch: 8 clips of 4x24x24   sample: {len(tiny_video())}-byte VP9 clip, "
          f"{PER_SHARD} per shard   baseline: per-epoch index files + fn.readers.webdataset (reader only)")
    largest = max(sizes)
    default = [r for r in rows if r["samples"] == largest and r["config"] == "auto" and "error" not in r]
    worst = max((r["setup_s"] + r["first_batch_s"] for r in default), default=float("nan"))
    tag = "240k" if largest == 240000 else f"{largest} (largest run)"
    print(f"epoch_setup_s_at_{'240k' if largest == 240000 else str(largest)}: {worst:.2f}"
          + ("" if largest == 240000 else f"   # {tag}"))


def _server(r: dict) -> str:
    """Requests the S3 server saw from the whole process; for the reader it must equal the reader's own count."""
    if r.get("server_requests") is None:
        return "-"
    mark = "" if r["config"] == "baseline" or r["server_requests"] == r.get("client_requests") else " (!)"
    return f"{r['server_requests']}{mark}"


def _row(r: dict) -> str:
    if r.get("error") and r["config"] != "baseline":
        return f"{r['samples']:>7} {r['storage']:<5} {r['config']:<16} failed: {r['error']}"
    if r["config"] == "baseline":
        req = "-"
        fail = f"   fails: {r['error']}" if r.get("error") else ""
        return (f"{r['samples']:>7} {r['storage']:<5} {'baseline':<16} {r['setup_s']:>7.2f} {r['first_batch_s']:>11.2f} "
                f"{'-':>7} {r.get('files_written', r['files']):>6} {req:>9} {'-':>10} {'-':>12} "
                f"{r['peak_rss_mb']:>7.0f} {'-':>9} {_server(r):>10}{fail}")
    per_epoch = (f"{r['requests_per_epoch']}" if "requests_per_epoch" in r
                 else f"{r['requests_per_epoch_planned']}*")
    shuffle = r["config"] if r["config"] == r["shuffle"] else f"{r['config']}->{r['shuffle']}"
    read_s = f"{r['epoch_read_s']:.1f}" if "epoch_read_s" in r else "-"
    return (f"{r['samples']:>7} {r['storage']:<5} {shuffle:<16} {r['setup_s']:>7.2f} {r['first_batch_s']:>11.2f} "
            f"{r['clips_per_s']:>7.1f} {r['files_written']:>6} {r['setup_requests']:>9} {per_epoch:>10} "
            f"{read_s:>12} {r['peak_rss_mb']:>7.0f} {r['spread64']:>9.1f} {_server(r):>10}")


if __name__ == "__main__":
    main()
