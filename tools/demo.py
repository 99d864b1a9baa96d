#!/usr/bin/env python
"""FROSTER's point on the CPU, in a few minutes: zero-shot vs plain fine-tuning vs FROSTER on a pre-trained tiny CLIP.

  1. pre-train a tiny CLIP on captioned frames of the generated world (tools/pretrain_clip.py; cached in OUT/clip,
     so a rerun skips it);
  2. generate the base-to-novel world in UCF101's layout with FROSTER's split lists and convert it with make_shards
     (VP9 shards, DALI index files, Parquet manifest);
  3. make_splits --from-split-files: 8 base classes, one red square in 8 motions, named without the colour
     ("square moving left", ... "square disappearing"), and 8 novel classes, 8 colours no base class has
     ("green circle spinning", ...);
  4. through model/train.py (model/configs/demo.yaml), from the pre-trained CLIP as both the student's start and the
     teacher: the zero-shot evaluation, plain fine-tuning (model.distill_weight=0) and FROSTER, each with the
     learning rate and epochs that tools/bench_fidelity.py's sweep chose on base validation clips (`CHOSEN`);
  5. print the three rows (base, novel, HM) and one sentence on what they mean; write OUT/results.json (FROSTER's
     run) and OUT/results.md (the table).

    python tools/demo.py --out demo_out [key.sub=value ...]

Every stage resumes: re-running the command skips what is done. One run of each method (the first run of the full
experiment: pre-training seed 0, world seed 0, seed 0, training set 1); the full experiment with its criteria,
seeds and intervals is `python tools/bench_fidelity.py --out fidelity_out` (docs/world.md).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model import omp  # noqa: F401,E402  (first: OpenMP threads must sleep while they wait; before torch)
from model import kernels  # noqa: F401,E402  (before torch: the same CPU kernels on every x86-64 machine)
from shards.cli import run, setup_logging, tool_parser  # noqa: E402

DEMO_CONFIG = REPO / "model" / "configs" / "demo.yaml"
# the sweep's choice (tools/bench_fidelity.py, default setting; docs/world.md "The sweep")
CHOSEN = {"finetune": ["train.lr=0.001", "train.epochs=80"], "froster": ["train.lr=0.0003", "train.epochs=80"]}
METHODS = (("zero-shot", "zero_shot", None),
           ("fine-tuned (λ=0)", "finetune", [*CHOSEN["finetune"], "model.distill_weight=0"]),
           ("FROSTER", "froster", CHOSEN["froster"]))


def meaning(rows: dict) -> str:
    """One sentence on what the three rows say (from their numbers)."""
    from model.evaluate import harmonic_mean
    z, f, fr = (rows[k] for k in ("zero-shot", "fine-tuned (λ=0)", "FROSTER"))
    hm = {k: harmonic_mean(r["base_top1"], r["novel_top1"]) for k, r in rows.items()}
    best = max(("zero-shot", "fine-tuned (λ=0)"), key=hm.get)
    verdict = "above" if hm["FROSTER"] > hm[best] else "not above"
    return (f"Zero-shot CLIP cannot tell the base motions apart ({z['base_top1']:.0f} % base) but names the novel "
            f"colours ({z['novel_top1']:.0f} %); fine-tuning "
            f"{'learns the motions' if f['base_top1'] >= z['base_top1'] + 25 else 'hardly learns the motions'} "
            f"({f['base_top1']:.0f} % base) and "
            f"{'forgets' if f['novel_top1'] <= z['novel_top1'] - 10 else 'keeps most of'} the novel classes "
            f"({f['novel_top1']:.0f} %); FROSTER gets {fr['base_top1']:.0f} % base and {fr['novel_top1']:.0f} % novel, "
            f"an HM of {hm['FROSTER']:.1f}, {verdict} the better baseline's {hm[best]:.1f} ({best}) in this one run "
            f"(the full experiment's interval: docs/world.md).")


def main(argv: list[str] | None = None) -> int:
    from tools import bench_fidelity as bf
    from tools import pretrain_clip

    ap = tool_parser(__doc__)
    ap.add_argument("--out", required=True, help="folder for everything the demo writes")
    ap.add_argument("--pretrain-steps", type=int, default=pretrain_clip.DEFAULTS["steps"])
    ap.add_argument("--pretrain-images", type=int, default=pretrain_clip.DEFAULTS["images"])
    ap.add_argument("--groups", type=int, default=8, help="UCF groups per class (split 1 tests on 1 in 4)")
    ap.add_argument("--clips", type=int, default=15, help="clips per group")
    ap.add_argument("--shots", type=int, default=16, help="training videos per base class")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="conversion processes")
    ap.add_argument("overrides", nargs="*", help="training config overrides, e.g. train.epochs=3")
    a = ap.parse_args(argv)
    setup_logging(a.quiet, a.verbose)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny CLIP is built from a local config; nothing to download
    bf.same_kernels(out)

    print("[1/5] pre-training the tiny CLIP on captioned frames of the world")
    ckpt = bf.pretrained_clip(out, steps=a.pretrain_steps, images=a.pretrain_images)
    print("[2/5] world dataset -> make_shards")
    t = time.time()
    # the experiment's world: its validation groups are held out of training, so the runs are the experiment's first
    info = bf.world_dataset(out, groups=a.groups, clips=a.clips, shots=a.shots, train_sets=3, workers=a.workers,
                            val_groups=tuple(g for g in bf.VAL_GROUPS if g <= a.groups))
    print(f"[3/5] make_splits --from-split-files ({time.time() - t:.0f} s): base {info['base'][:2]}..., "
          f"novel {info['novel'][:2]}...")
    print(f"[4/5] training and evaluating through model/train.py --config {DEMO_CONFIG.relative_to(REPO)}")
    rows = {}
    for label, key, ov in METHODS:
        t = time.time()
        overrides = (ov or []) + list(a.overrides)         # the command line's overrides win
        rows[label] = bf.run(out, key, overrides, checkpoint=ckpt, splits=out / "splits", seed=0, train_set=1,
                             zero_shot=ov is None)
        print(f"      {label}: {time.time() - t:.0f} s")
    table = bf.table([(label, bf.summarise([r])) for label, r in rows.items()])
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({**rows["FROSTER"], "methods": rows}, indent=2) + "\n")
    print(f"[5/5] base-to-novel on the world ({len(info['base'])} base, {len(info['novel'])} novel classes, 1 seed, "
          f"training set 1):")
    print(table)
    print(meaning(rows))
    print(f"demo finished in {time.time() - start:.0f} s; wrote {out / 'results.json'}. The full experiment "
          f"(2 pre-training x 2 world seeds, the sweep, criteria, intervals, controls, ablations): "
          f"python tools/bench_fidelity.py --out fidelity_out")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
