#!/usr/bin/env python
"""Convert K400, K600, UCF101, HMDB51 or SSv2, as distributed, or your own videos in class folders, into
WebDataset shards with Parquet manifests.

    python tools/make_shards.py --dataset ucf101 --root /data/UCF101 --out s3://bucket/ucf101
    python tools/make_shards.py --dataset folder --root my_videos --test-fraction 0.3 --out my_shards
    python tools/make_shards.py --merge --out s3://bucket/k400        # after all --part I/N runs
    sbatch --array=0-7 tools/slurm/make_shards.sbatch ...             # --part auto: 8 parts (docs/cluster.md)

Without --dataset/--root it converts a small generated UCF101-layout dataset (the built-in default).
Re-run the same command after a crash to resume it. SIGTERM or SIGINT (scancel, a time limit, Ctrl-C) releases the
lock and removes the scratch files, then exits with status 128 + the signal (143, 130).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shards.cli import run, setup_logging, tool_parser, whole_number  # noqa: E402
from shards.cluster import SchedulerError, Stopped, part_source, scheduler_part, stop_on_signals  # noqa: E402
from shards.convert import (DEFAULT_KEYFRAME_INTERVAL, MAX_KEYFRAME_INTERVAL, ORDERS, SettingError,  # noqa: E402
                            check_fps, convert_dataset, merge, parse_part, parse_size)
from shards.storage.orphans import owned_tempdir, sweep_tempdirs  # noqa: E402
from shards.sources import DATASETS  # noqa: E402

DEMO_PREFIX = "frostline-make-shards-"


def _checked(parse, what: str):
    """An argparse type from one of convert's parsers: its message becomes argparse's (exit status 2)."""
    def convert(text):
        try:
            return parse(text)
        except SettingError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = what
    return convert


def _size(text):
    value = parse_size(text)
    if value <= 0:
        raise SettingError(f"the shard size must be positive, got {text!r}")
    return text


def _part(text):
    """--part: I/N, or `auto` (from the scheduler's variables: shards.cluster.scheduler_part), checked now."""
    try:
        if text.strip().lower() == "auto":
            scheduler_part()
            return "auto"
        parse_part(text)
    except (SettingError, SchedulerError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def parse_args(argv=None) -> argparse.Namespace:
    p = tool_parser(__doc__)
    p.add_argument("--dataset", choices=DATASETS, help="dataset layout of --root")
    p.add_argument("--root", help="the dataset as distributed (a local folder); folder: ROOT/<class>/<video> or "
                                  "ROOT/{train,test}/<class>/<video>")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="folder: share of each class's videos put in split test, drawn by --seed (default: none)")
    p.add_argument("--out", help="output folder or s3://bucket/prefix (AWS_* variables, incl. AWS_ENDPOINT_URL)")
    p.add_argument("--workers", type=whole_number(1, 1024), default=None,
                   help="parallel videos (default: the CPUs this process may use, os.sched_getaffinity)")
    p.add_argument("--codec", choices=("vp9", "h264", "copy"), default="vp9",
                   help="stored stream: vp9 (DALI CPU+GPU), h264 (DALI GPU only), copy (keep it when decodable)")
    p.add_argument("--short-side", type=whole_number(2, 8192), default=256, help="short side in pixels (never upscaled)")
    p.add_argument("--fps", type=_checked(check_fps, "fps"), default=30,
                   help="constant output frame rate, 1 to 240 (default 30)")
    p.add_argument("--keyframe-interval", type=whole_number(1, MAX_KEYFRAME_INTERVAL),
                   default=DEFAULT_KEYFRAME_INTERVAL,
                   help="frames between keyframes (random-access decode speed vs size)")
    p.add_argument("--shard-size", type=_checked(_size, "size"), default="512MB",
                   help="target tar size, e.g. 512MB, 1GB")
    p.add_argument("--splits", default=None, help="comma-separated splits to convert (default: all)")
    p.add_argument("--limit", type=whole_number(1), default=None,
                   help="at most N videos per split (after the seeded shuffle)")
    p.add_argument("--part", type=_part, default=None,
                   help="I/N: convert the I-th of N deterministic parts; auto: the part of this Slurm array task or "
                        "Kubernetes indexed Job (docs/cluster.md)")
    p.add_argument("--seed", type=int, default=0, help="order of samples within a split's shards")
    p.add_argument("--order", choices=ORDERS, default="shuffled",
                   help="shuffled (by --seed: classes mixed in every shard) or by-class (class after class, as "
                        "datasets written folder by folder are; the worst case for a shuffle)")
    p.add_argument("--merge", action="store_true", help="only combine the manifests of finished --part runs")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only when stderr is a terminal)")
    args = p.parse_args(argv)
    if args.merge and not args.out:
        p.error("--merge needs --out")
    if (args.dataset is None) != (args.root is None):
        p.error("give --dataset, --root and --out (or none of --dataset/--root for the built-in default)")
    if args.dataset and not args.out:
        p.error("give --dataset, --root and --out (or none of --dataset/--root for the built-in default)")
    return args


def main(argv=None) -> int:
    """make_shards; SIGTERM/SIGINT stop it cleanly (lock released, scratch files removed) with status 128 + signal."""
    with stop_on_signals():
        try:
            return _convert(argv)
        except Stopped as stop:
            print(f"make_shards: stopped by {stop.name}: lock released, scratch files removed; run the same command "
                  "again to resume", file=sys.stderr, flush=True)
            return stop.status


def _convert(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    if args.merge:
        manifest, rejects = merge(args.out)
        print(f"merged {args.out}: {manifest.num_rows} samples, {rejects.num_rows} rejects")
        return 0
    if args.part == "auto":
        args.part = "{}/{}".format(*scheduler_part())
        print(f"--part auto: part {args.part} ({part_source()})", flush=True)
    scratch = None
    if args.dataset is None and args.root is None:
        from shards.generated.synthetic import make_ucf101

        sweep_tempdirs(DEMO_PREFIX)     # the generated datasets of killed runs
        scratch = owned_tempdir(DEMO_PREFIX)
        args.dataset, args.root = "ucf101", os.path.join(scratch.name, "ucf101")
        args.out = args.out or "demo_out/shards"
        syn = make_ucf101(args.root, num_classes=8, groups=8, clips=2, learnable=True, quirks=False,
                          width=96, height=72, num_frames=48)
        print(f"generated a {syn.total}-video UCF101-layout dataset (8 learnable classes)")
    try:
        summary = convert_dataset(
            args.dataset, args.root, args.out, workers=args.workers, codec=args.codec,
            short_side=args.short_side, fps=args.fps, shard_size=args.shard_size, splits=args.splits,
            limit=args.limit, part=args.part, seed=args.seed, order=args.order,
            progress=(sys.stderr.isatty() if args.progress is None else args.progress) and not args.quiet,
            keyframe_interval=args.keyframe_interval, test_fraction=args.test_fraction)
    finally:
        if scratch is not None:
            scratch.cleanup()
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(run(main, prog="make_shards"))
