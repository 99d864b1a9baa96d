#!/usr/bin/env python
"""The whole mission on a generated dataset, on the CPU, in a few minutes:

  1. generate a small UCF101-layout dataset whose classes are visually distinct (colour, shape, motion);
  2. make_shards: convert it to WebDataset shards + Parquet manifests (VP9, DALI index files);
  3. make_splits --shots 16: the base-to-novel protocol (generated split, seed 0), with class prompts that spell
     each class's attributes ("red circle moving left");
  4. train a tiny randomly initialised CLIP with FROSTER (model/configs/demo.yaml) through the DALI pipeline;
  5. evaluate the average of the epoch checkpoints: base, novel and HM; print the table, write OUT/results.json.

    python tools/demo.py --out demo_out

Every stage resumes: re-running the command skips what is done (the dataset, finished shards, finished epochs).
A tiny CLIP trained from scratch learns the base classes; its novel-class accuracy is a toy (see README).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model import omp  # noqa: F401,E402  (first: OpenMP threads must sleep while they wait; before torch)
from shards.cli import Failure, add_logging_flags, run, setup_logging  # noqa: E402

DEMO_CONFIG = REPO / "model" / "configs" / "demo.yaml"


def make_dataset(out: Path, *, num_classes: int, groups: int, clips: int, frames: int, workers: int,
                 seed: int = 0) -> None:
    """Steps 1-3: generated videos -> shards -> base2novel splits (skips what is already there)."""
    from shards import splits, synthetic
    from shards.convert import convert_dataset

    raw, store, split_dir = out / "raw", out / "shards", out / "splits"
    t = time.time()
    settings = {"classes": num_classes, "groups": groups, "clips": clips, "frames": frames, "seed": seed}
    done = raw / ".complete"
    if done.exists() and json.loads(done.read_text())["settings"] != settings:
        raise Failure(f"{out} holds a demo made with {json.loads(done.read_text())['settings']}; "
                      f"use another --out for {settings}")
    if not done.exists():
        shutil.rmtree(raw, ignore_errors=True)
        syn = synthetic.make_ucf101(str(raw), num_classes=num_classes, groups=groups, clips=clips, width=64,
                                    height=48, num_frames=frames, quirks=False, learnable=True, seed=seed)
        done.write_text(json.dumps({"settings": settings, "classes": syn.classes}))
    print(f"[1/5] dataset: {num_classes} classes x {groups} groups x {clips} clips under {raw} "
          f"({time.time() - t:.1f} s)")

    t = time.time()
    summary = convert_dataset("ucf101", str(raw), str(store), workers=workers, short_side=64, progress=False)
    print(f"[2/5] make_shards: {summary.samples} samples, {summary.shards} shard(s), "
          f"{sum(summary.rejects.values())} rejects -> {store} ({time.time() - t:.1f} s)")

    t = time.time()
    # make_splits --class-names: each class's prompt spells its attributes ("red circle moving left"), so the
    # text of a novel class shares words with base classes
    names = json.loads((raw / ".complete").read_text())["classes"]
    prompts = json.dumps({c: re.sub(r"(?<!^)(?=[A-Z])", " ", c).lower() for c in names})
    (out / "class_names.json").write_text(prompts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = splits.Manifest.load(str(store), "ucf101")
        plan = splits.base2novel(m, shots=16, seed=seed, num_train_sets=1, class_names=prompts,
                                 class_names_path=str(out / "class_names.json"))
        rows = splits.write_plan(plan, str(split_dir))
    for w in {str(w.message) for w in caught}:
        print(f"      warning: {w}")
    print(f"[3/5] make_splits --shots 16 ({time.time() - t:.1f} s)")
    print("\n".join("      " + line for line in splits.format_summary(rows).splitlines()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for everything the demo writes")
    ap.add_argument("--classes", type=int, default=10, help="classes in the generated dataset (half are novel)")
    ap.add_argument("--groups", type=int, default=8, help="UCF groups per class (split 1 tests on 1 in 4)")
    ap.add_argument("--clips", type=int, default=3, help="clips per group")
    ap.add_argument("--frames", type=int, default=40, help="frames per generated video (30 fps)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="conversion processes")
    add_logging_flags(ap)
    ap.add_argument("overrides", nargs="*", help="training config overrides, e.g. train.epochs=3")
    a = ap.parse_args(argv)
    setup_logging(a.quiet, a.verbose)
    verbosity = ["--quiet"] if a.quiet else ["--verbose"] if a.verbose else []
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny CLIP is built from a local config; nothing to download

    make_dataset(out, num_classes=a.classes, groups=a.groups, clips=a.clips, frames=a.frames, workers=a.workers)

    from model import train
    run = out / "run"
    args = ["--config", str(DEMO_CONFIG), f"output_dir={run}", f"data.splits={out / 'splits'}", *a.overrides]
    print(f"[4/5] training: python model/train.py {' '.join(args)}")
    t = time.time()
    train.main([*args, *verbosity, "--no-eval"])
    print(f"      trained in {time.time() - t:.1f} s")

    print("[5/5] evaluation (3 views x 1 crop, average of the epoch checkpoints)")
    t = time.time()
    train.main([*args, *verbosity, "--eval-only"])
    results = json.loads((run / "results.json").read_text())
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    shutil.copyfile(run / "results.md", out / "results.md")
    print(f"      evaluated in {time.time() - t:.1f} s; wrote {out / 'results.json'}")
    print(f"demo finished in {time.time() - start:.0f} s. A tiny CLIP trained from scratch learns the base "
          f"classes; its novel number only reflects prompt words shared with base classes. Real open-vocabulary "
          f"numbers need real CLIP weights (README, 'The demo').")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
