"""Clips/s and frames/s of the DALI pipeline against the official-style PyAV DataLoader, same shards, same CPUs.

    python tools/bench_loader.py --split SPLIT.parquet --device cpu|gpu [--batches 20] [--workers N]
    python tools/bench_loader.py --synthetic /tmp/bench --device cpu      # generates VP9 shards first

Prints a table and, as its last line, `ratio: X.XX` (pipeline clips/s / baseline clips/s).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.baseline import build_baseline  # noqa: E402
from pipeline.loader import LoaderConfig, build_loader  # noqa: E402


def synthetic_split(folder: str, codec: str, videos: int, frames: int) -> str:
    """A UCF101-layout dataset of `videos` 340x256 clips, converted to `codec` shards; returns a split covering it."""
    from shards.convert import convert_dataset
    from shards.synthetic import make_ucf101

    store = os.path.join(folder, f"store-{codec}")
    if not os.path.exists(os.path.join(store, "manifest.parquet")):
        groups = max(1, videos // 4)
        make_ucf101(os.path.join(folder, "src"), num_classes=4, groups=groups, clips=1, width=340, height=256,
                    num_frames=frames, quirks=False, learnable=True)
        convert_dataset("ucf101", os.path.join(folder, "src"), store, codec=codec, progress=False)
    return store


def timed(batches, n: int, warmup: int) -> tuple[int, float]:
    """Clips delivered and seconds taken for `n` batches after `warmup` batches."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    clips, start = 0, time.perf_counter()
    for _ in range(n):
        b = next(it)
        clips += (b.clips if hasattr(b, "clips") else b[0]).shape[0]
    return clips, time.perf_counter() - start


def cycle(make):
    """Batches from successive epochs, so short splits can still be timed for many batches."""
    epoch = 0
    while True:
        yield from make(epoch)
        epoch += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", help="split Parquet file or shard store (folder / s3:// URL)")
    ap.add_argument("--synthetic", help="make VP9 shards of a generated dataset in this folder and use them")
    ap.add_argument("--codec", default="vp9", help="codec of --synthetic shards")
    ap.add_argument("--videos", type=int, default=16)
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
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    if not args.split and not args.synthetic:
        ap.error("give --split or --synthetic")
    split = args.split or synthetic_split(args.synthetic, args.codec, args.videos, args.video_frames)

    cfg = LoaderConfig(device=args.device, batch_size=args.batch_size, num_frames=args.num_frames,
                       frame_stride=args.frame_stride, sampling=args.sampling, crop_size=args.crop_size,
                       short_side_range=(args.crop_size, round(args.crop_size * 256 / 224)),
                       num_threads=args.workers, train=True)

    def pipeline_epochs(epoch):
        loader.set_epoch(epoch)
        return iter(loader)

    loader = build_loader(split, cfg)
    results = [("dali pipeline", args.device, args.workers, *timed(cycle(pipeline_epochs), args.batches, args.warmup))]
    loader.close()
    if not args.skip_baseline:
        base_cfg = LoaderConfig(**{**cfg.__dict__, "device": "cpu"})
        baseline = build_baseline(split, base_cfg, args.workers)   # persistent workers, reused every epoch
        results.append(("pyav dataloader", "cpu", args.workers,
                        *timed(cycle(lambda e: iter(baseline)), args.batches, args.warmup)))

    T = args.num_frames
    print(f"split: {split}   clip: {T}x{args.crop_size}x{args.crop_size} ({args.sampling}, stride {args.frame_stride})"
          f"   batch: {args.batch_size}   timed batches: {args.batches}")
    print(f"{'loader':<16} {'device':<6} {'workers':>7} {'clips':>6} {'seconds':>8} {'clips/s':>8} {'frames/s':>9}")
    for name, dev, w, clips, secs in results:
        print(f"{name:<16} {dev:<6} {w:>7} {clips:>6} {secs:>8.2f} {clips / secs:>8.2f} {clips * T / secs:>9.1f}")
    if len(results) == 2:
        ratio = (results[0][3] / results[0][4]) / (results[1][3] / results[1][4])
        print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
