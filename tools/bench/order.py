#!/usr/bin/env python
"""Does the training order change accuracy? FROSTER on the generated world, trained in an exact global permutation,
in the interleaved order and in shard order, over seeds x training sets.

    python tools/bench/order.py --out order_out          # resumes; --quick is the test's reduced setting

The loader's default on object storage (`shuffle="auto"` -> `interleave`) approximates a global permutation: it
mixes `interleave_shards` shards at a time. This tool measures whether that costs accuracy, by default in the worst
layout: the world's videos stored class after class (`make_shards --order by-class`), about one class a shard, and
only `--interleave-shards` (default 2) mixed, so a batch of 16 sees 3 of the 4 base classes instead of 4 (at K400
scale on a store written class by class, `interleave` sees 28.7 classes per 64 samples against 59.2: docs/benchmarks/,
"The loader at scale"). `--store-order shuffled` uses make_shards' own layout (classes mixed inside every shard) instead. The
`shard` order (one shard after another, the worst mixing the loader offers) is the control: if it does not change
accuracy either, the experiment cannot see an order effect at all.

Everything else is `tools/bench_fidelity.py`'s setting (the pre-trained world CLIP, model/configs/demo.yaml,
FROSTER), run through make_shards -> make_splits -> DALI CPU -> model/train.py. Prints the mixing of each order
(distinct classes per training batch, averaged over the first epoch), the table (mean +- std over the pairs) and,
last, `interleave_hm_change: X.XX`, the interleaved order's HM minus the exact permutation's, in points.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools import bench_fidelity as bf  # noqa: E402

ORDERS = ("sample", "interleave", "shard")
LABELS = {"sample": "exact permutation (sample)", "interleave": "interleave", "shard": "shard order (control)"}
STORED = {"by-class": "class after class", "shuffled": "with classes mixed (make_shards' default)"}


def classes_per_batch(split: Path, shuffle: str, interleave_shards: int, batch: int, seed: int) -> float:
    """Mean distinct classes per training batch of epoch 0, in the order the loader plans for `seed`."""
    import numpy as np

    from pipeline.loader import LoaderConfig, build_loader
    loader = build_loader(str(split), LoaderConfig(device="cpu", batch_size=batch, shuffle=shuffle, seed=seed,
                                                   interleave_shards=interleave_shards, train=True))
    try:
        labels = np.asarray(loader.table.label)[loader.plan(0).sample]
    finally:
        loader.close()
    n = len(labels) // batch * batch
    return float(np.mean([len(set(labels[i:i + batch].tolist())) for i in range(0, n, batch)]))


def experiment(out: Path, *, seeds: list[int], train_sets: list[int], epochs: int, shard_size: str,
               store_order: str = "by-class",
               interleave_shards: int, pretrain_steps: int, pretrain_images: int, groups: int, clips: int, shots: int,
               extra: list[str], orders: tuple[str, ...] = ORDERS, log=bf.say) -> dict:
    start = time.time()
    log("[1/3] pre-training the world CLIP (tools/pretrain_clip.py)")
    ckpt = bf.pretrained_clip(out, steps=pretrain_steps, images=pretrain_images, log=log)
    log(f"[2/3] the base-to-novel world, stored {STORED[store_order]} in shards of up to {shard_size}")
    info = bf.world_dataset(out, groups=groups, clips=clips, shots=shots, train_sets=max(3, *train_sets),
                            shard_size=shard_size, order=store_order, log=log)
    splits = out / "splits"
    batch = int(next((o.split("=", 1)[1] for o in extra if o.startswith("train.global_batch=")),
                     bf.yaml_config()["train"]["global_batch"]))
    mixing = {o: classes_per_batch(splits / "base2novel" / "ucf101" / "train_s1.parquet", o, interleave_shards,
                                   batch, seeds[0]) for o in orders}
    common = [f"train.epochs={epochs}", f"data.interleave_shards={interleave_shards}", *extra]
    pairs = [(s, t) for s in seeds for t in train_sets]
    log(f"[3/3] FROSTER in {len(orders)} training orders over {len(pairs)} (seed, training set) pairs")
    results: dict[str, list[dict]] = {o: [] for o in orders}
    for s, ts in pairs:
        for o in orders:
            t = time.time()
            r = bf.run(out, f"order_{o}", common + [f"data.shuffle={o}"], checkpoint=ckpt, splits=splits, seed=s,
                       train_set=ts)
            results[o].append(r)
            log(f"      {LABELS[o]}, seed {s}, training set {ts}: base {r['base_top1']:.1f} "
                f"novel {r['novel_top1']:.1f} ({time.time() - t:.0f} s)")
    rows = {o: bf.summarise(rs) for o, rs in results.items()}
    change = (rows["interleave"]["hm"] - rows["sample"]["hm"]
              if "interleave" in rows and "sample" in rows else float("nan"))
    report = {"rows": rows, "classes_per_batch": mixing, "shards": info["shards"], "batch": batch,
              "store_order": store_order,
              "interleave_shards": interleave_shards, "seeds": seeds, "train_sets": train_sets, "epochs": epochs,
              "interleave_hm_change": change, "wall_s": time.time() - start,
              "per_pair_hm": {o: [bf.pair_hm(r) for r in rs] for o, rs in results.items()}}
    (out / "order.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = bf.world_arguments(__doc__, "reduced: 1 seed x 1 training set, 2 epochs, short "
                            "pre-training, a smaller world in batches of 4 (the test's setting)")
    ap.add_argument("--orders", nargs="+", default=list(ORDERS), choices=ORDERS)
    ap.add_argument("--shard-size", default="192KB", help="make_shards --shard-size of the world store (about 24 "
                    "videos, about one class, a shard)")
    ap.add_argument("--interleave-shards", type=int, default=2, help="shards the interleaved order mixes")
    ap.add_argument("--store-order", choices=sorted(STORED), default="by-class",
                    help="make_shards --order of the world store: by-class (the worst case, default) or shuffled "
                         "(make_shards' default: classes mixed in every shard)")
    a = ap.parse_args(argv)
    if a.quick:
        a.shard_size = "16KB"
        a.overrides += ["train.global_batch=4", "train.micro_batch=4"]    # 8 training videos: 2 batches
    out, settings = bf.world_settings(a)
    rep = experiment(out, **settings, shard_size=a.shard_size, store_order=a.store_order,
                     interleave_shards=a.interleave_shards,
                     orders=tuple(a.orders))
    print()
    print(f"Training order on the generated world (FROSTER; {rep['shards']} shards written "
          f"{STORED[rep['store_order']]}; "
          f"mean ± sample std over {len(a.seeds)} seed(s) x {len(a.train_sets)} training set(s), {rep['epochs']} "
          f"epochs; HM of the means; "
          f"interleave mixes {rep['interleave_shards']} shards):")
    lines = ["| order | classes per batch of %d | runs | base top-1 | novel top-1 | HM |" % rep["batch"],
             "|---|---:|---:|---:|---:|---:|"]
    for o, s in rep["rows"].items():
        lines.append(f"| {LABELS[o]} | {rep['classes_per_batch'][o]:.2f} | {s['n']} | {bf.fmt(s['base_top1'])} | "
                     f"{bf.fmt(s['novel_top1'])} | {s['hm']:5.1f} |")
    print("\n".join(lines))
    print(f"wall time: {rep['wall_s']:.0f} s")
    print(f"interleave_hm_change: {rep['interleave_hm_change']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
