#!/usr/bin/env python
"""Write protocol split manifests (Parquet) from shard-store manifests.

  python tools/make_splits.py --protocol base2novel --dataset {k400,hmdb51,ucf101,ssv2,folder}
         --manifest DIR_OR_URL --out DIR_OR_URL --shots {16,all} --seed 0 [--num-train-sets 3]
         [--from-split-files DIR] [--class-names FILE]
  python tools/make_splits.py --protocol cross --train-manifest K400_DIR --eval-manifest DIR
         --dataset {ucf101,hmdb51,k600} --out DIR_OR_URL [--num-eval-sets 3] [--classes-per-set 160]
         [--seed 0] [--novel-classes FILE] [--from-split-files DIR] [--class-names FILE] [--train-class-names FILE]

The rules: docs/splits.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shards import splits  # noqa: E402
from shards.cli import run, setup_logging, tool_parser, whole_number  # noqa: E402
from shards.records import LayoutError  # noqa: E402
from shards.sources import read_text  # noqa: E402
from shards.storage import join  # noqa: E402
from shards.storage.lock import RunLock  # noqa: E402

LOCK = "_make_splits.lock"   # under --out: one make_splits per output at a time


def _shots(text: str) -> int | None:
    """--shots N (N >= 1) or 'all' (None: every training video)."""
    if text == "all":
        return None
    try:
        return whole_number(1, 1_000_000)(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (or 'all')") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = tool_parser(__doc__)
    p.add_argument("--protocol", required=True, choices=["base2novel", "cross"])
    p.add_argument("--dataset", required=True, choices=sorted(set(splits.B2N_DATASETS) | set(splits.CROSS_DATASETS)))
    p.add_argument("--out", required=True, help="folder or s3://bucket/prefix; files go under base2novel/ or cross/")
    p.add_argument("--manifest", help="base2novel: the dataset's shard store (folder or s3:// URL)")
    p.add_argument("--train-manifest", help="cross: K400's shard store")
    p.add_argument("--eval-manifest", help="cross: the evaluation dataset's shard store")
    p.add_argument("--shots", type=_shots, default=16,
                   help="training videos per base class, or 'all' (your own videos; default 16, the papers')")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated splits (default 0)")
    p.add_argument("--num-train-sets", type=whole_number(1, 100), default=3, help="base2novel training sets s1..sN (default 3)")
    p.add_argument("--num-eval-sets", type=whole_number(1, 100), default=3, help="cross evaluation sets (default 3)")
    p.add_argument("--classes-per-set", type=whole_number(1, 1_000_000), default=160, help="cross K600: classes per evaluation set")
    p.add_argument("--from-split-files", metavar="DIR", help="import published split files found under DIR")
    p.add_argument("--split-format", default="auto", choices=["auto", "vificlip", "froster"],
                   help="which published files to import from DIR (auto: ViFi-CLIP's when present, else FROSTER's); "
                        "froster also takes the class descriptions from FROSTER's rephrased files under DIR")
    p.add_argument("--class-names", metavar="FILE",
                   help="JSON class descriptions: FROSTER's rephrased files as published "
                   "({index: 'Name: description'}, matched by Name) or {class name or id: text}")
    p.add_argument("--train-class-names", metavar="FILE", help="cross: the same for K400's training classes")
    p.add_argument("--novel-classes", metavar="FILE",
                   help="cross K600: the novel class names, one per line (or an id,name CSV), instead of matching")
    args = p.parse_args(argv)
    if args.protocol == "base2novel":
        if args.dataset not in splits.B2N_DATASETS:
            p.error(f"--protocol base2novel takes --dataset {{{','.join(splits.B2N_DATASETS)}}}")
        if not args.manifest:
            p.error("--protocol base2novel needs --manifest")
    else:
        if args.dataset not in splits.CROSS_DATASETS:
            p.error(f"--protocol cross takes --dataset {{{','.join(splits.CROSS_DATASETS)}}}")
        if not (args.train_manifest and args.eval_manifest):
            p.error("--protocol cross needs --train-manifest and --eval-manifest")
    return args


def read(path: str | None) -> str | None:
    """A class-name or class-list file: UTF-8 text (a byte-order mark is dropped); other bytes are an error
    naming the file, line and column."""
    return None if path is None else read_text(path)


def run_settings(args: argparse.Namespace) -> dict:
    """What the set manifest records of this run: every option but the logging flags."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in ("quiet", "verbose")}


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    t0 = time.time()
    warnings.simplefilter("ignore", splits.SplitWarning)   # printed below from plan.warnings, once each
    try:
        plans = plan(args)
        with RunLock(join(args.out, LOCK), what=args.out):
            rows = [row for p in plans for row in splits.write_plan(p, args.out, run_settings(args))]
    except (splits.SplitError, LayoutError, FileNotFoundError) as e:
        print(f"make_splits: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    for p in plans:
        for note in p.notes:
            print(note, flush=True)
        for w in p.warnings:
            print(f"WARNING: {w}", file=sys.stderr, flush=True)
    print(splits.format_summary(rows))
    print(f"wrote {len(rows)} files under {args.out} in {time.time() - t0:.1f}s")
    return 0


def plan(args: argparse.Namespace) -> list:
    """Every split set of the command, planned (all input read and checked) before anything is written; each is
    then written as one unit (`splits.write_plan`) under the lock of --out."""
    if args.protocol == "base2novel":
        m = splits.Manifest.load(args.manifest, args.dataset)
        plans = [splits.base2novel(m, shots=args.shots, seed=args.seed, num_train_sets=args.num_train_sets,
                                   class_names=read(args.class_names), class_names_path=args.class_names,
                                   split_files=args.from_split_files, split_format=args.split_format)]
    else:
        k400 = splits.Manifest.load(args.train_manifest, "k400")
        m = splits.Manifest.load(args.eval_manifest, args.dataset)
        plans = [splits.cross_train(k400, class_names=read(args.train_class_names),
                                    class_names_path=args.train_class_names,
                                    split_files=args.from_split_files, split_format=args.split_format),
                 splits.cross(k400, m, seed=args.seed, num_eval_sets=args.num_eval_sets,
                              classes_per_set=args.classes_per_set,
                              novel_classes_text=read(args.novel_classes), novel_classes_path=args.novel_classes,
                              class_names=read(args.class_names), class_names_path=args.class_names,
                              split_files=args.from_split_files, split_format=args.split_format)]
    for p in plans:
        splits.check_plan(p)
    return plans


if __name__ == "__main__":
    sys.exit(run(main, prog="make_splits"))   # other expected failures (permissions, S3): one line, status 2
