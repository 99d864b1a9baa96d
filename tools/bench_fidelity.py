#!/usr/bin/env python
"""Does FROSTER help? Zero-shot vs plain fine-tuning vs FROSTER on base and novel classes of the generated world.

    python tools/bench_fidelity.py --out fidelity_out           # the full experiment (tens of minutes on 2 cores)
    python tools/bench_fidelity.py --out q --quick              # a reduced run (the test's setting)

1. A tiny CLIP is pre-trained on captioned frames of the world (tools/pretrain_clip.py; cached under OUT/clip).
2. A base-to-novel dataset of colour+shape+motion classes is generated in UCF101's layout with FROSTER's published
   split lists (shards/generated/world.py), converted by make_shards and split by make_splits (--from-split-files): 4 base
   classes with a narrow vocabulary ("red square moving left", "blue triangle spinning", ...); every novel class name
   consists of words pre-training saw but no base class name contains ("yellow circle growing"; "moving" aside).
3. Every method runs through model/train.py with model/configs/demo.yaml, from the same pre-trained CLIP (student
   initialisation and teacher): zero-shot (`--eval-only --zero-shot`), plain fine-tuning (`model.distill_weight=0`:
   the teacher and projectors get no say in any gradient) and FROSTER (the config's alpha and lambda), each over
   every (seed, training set) pair. Ablations vary alpha and lambda on the same pairs.
4. Class similarity: for every novel class, the largest cosine between its text feature and any base class's (the
   pre-trained CLIP, 29-template ensemble); the mean over novel classes says how far novel is from base.

Prints the tables (mean +- population std over seeds x training sets) and, last, `froster_hm_gain: X.XX`:
FROSTER's HM minus plain fine-tuning's, in points. Every run resumes: re-running skips finished runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = REPO / "model" / "configs" / "demo.yaml"
# Each class has its own colour, so a CLIP that grounded its colour words can name it zero-shot; shapes and motions
# differ too. Base words: red, blue, purple, orange, square, triangle, moving left, spinning. Novel words (seen in
# pre-training, in no base class name except "moving"): yellow, green, white, cyan, circle, cross, diamond, ring,
# growing, up, down, shrinking.
BASE = [("red", "square", "moving left"), ("blue", "triangle", "spinning"), ("purple", "square", "spinning"),
        ("orange", "triangle", "moving left")]
NOVEL = [("yellow", "circle", "growing"), ("green", "cross", "moving up"), ("white", "diamond", "moving down"),
         ("cyan", "ring", "shrinking")]


def say(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------------------------ the inputs
def pretrained_clip(out: Path, *, steps: int, images: int, log=say) -> Path:
    """The pre-trained world CLIP under out/clip (made once, reused while its settings stay the same)."""
    from tools import pretrain_clip
    path = out / "clip" / "world_clip.pt"
    settings = {**pretrain_clip.DEFAULTS, "steps": steps, "images": images}
    t = time.time()
    info = pretrain_clip.pretrain(path, **settings, log=lambda m: log("      " + m))
    log(f"      pre-trained CLIP: {path} (held-out zero-shot {info['zero_shot_untrained']:.1f} % untrained -> "
        f"{info['zero_shot_trained']:.1f} % trained; {time.time() - t:.0f} s)")
    return path


def world_dataset(out: Path, *, groups: int, clips: int, shots: int, train_sets: int, frames: int = 16,
                  seed: int = 0, workers: int = 1, shard_size: str = "512MB", order: str = "shuffled",
                  log=say) -> dict:
    """Generate -> make_shards (`shard_size`, `order`) -> make_splits (skipping what is done); returns the class
    lists and the number of shards."""
    from shards import splits
    from shards.generated import world
    from shards.convert import convert_dataset

    raw, store, split_dir = out / "raw", out / "shards", out / "splits"
    settings = {"groups": groups, "clips": clips, "shots": shots, "train_sets": train_sets, "frames": frames,
                "seed": seed, "base": BASE, "novel": NOVEL}
    done = raw / ".complete"
    if done.exists() and json.loads(done.read_text())["settings"] != json.loads(json.dumps(settings)):
        sys.exit(f"error: {raw} holds a world made with other settings; use another --out")
    t = time.time()
    if not done.exists():
        shutil.rmtree(raw, ignore_errors=True)
        ds = world.make_b2n_ucf101(str(raw), [world.WorldClass(*c) for c in BASE],
                                   [world.WorldClass(*c) for c in NOVEL], groups=groups,
                                   clips=clips, shots=shots, num_train_sets=train_sets, frames=frames, seed=seed)
        done.write_text(json.dumps({"settings": settings, "class_names": ds.class_names,
                                    "base": [c.prompt for c in ds.base], "novel": [c.prompt for c in ds.novel]}))
    info = json.loads(done.read_text())
    summary = convert_dataset("ucf101", str(raw), str(store), workers=workers, short_side=32, progress=False,
                              shard_size=shard_size, order=order)
    info["shards"] = summary.shards
    log(f"      world: {len(info['base'])} base + {len(info['novel'])} novel classes, {summary.samples} videos in "
        f"{summary.shards} shard(s), {sum(summary.rejects.values())} rejects ({time.time() - t:.0f} s)")
    if not (split_dir / "base2novel" / "ucf101" / "eval_novel.parquet").exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = splits.Manifest.load(str(store), "ucf101")
            plan = splits.base2novel(m, shots=shots, seed=seed, num_train_sets=train_sets,
                                     class_names=json.dumps(info["class_names"]),
                                     split_files=str(raw / "zs_label_db"), split_format="froster")
            splits.write_plan(plan, str(split_dir))
    return info


def class_similarity(checkpoint: Path, base: list[str], novel: list[str]) -> tuple[float, list[float]]:
    """Per novel class the max cosine to any base class (29-template text ensemble of the given CLIP); the mean."""
    import torch
    import torch.nn.functional as F
    from model import prompts
    from model.clip import build_clip, encode_text

    clip, tok = build_clip("frostline-world", pretrained=None, checkpoint=checkpoint)

    def feats(texts):
        table = prompts.prompt_table(texts)
        with torch.no_grad():
            f = torch.stack([encode_text(clip, tok(row)) for row in table]).mean(0)
        return F.normalize(f, dim=-1)
    sims = (feats(novel) @ feats(base).T).max(dim=1).values.tolist()
    return sum(sims) / len(sims), sims


# ---------------------------------------------------------------------------------------------------------- runs
def run(out: Path, name: str, overrides: list[str], *, checkpoint: Path, splits: Path, seed: int, train_set: int,
        zero_shot: bool = False) -> dict:
    """One model/train.py run (train + evaluate, or the zero-shot evaluation); reuses a finished one."""
    from model import train
    run_dir = out / "runs" / name / f"seed{seed}_set{train_set}"
    result = run_dir / ("zero_shot" if zero_shot else "") / "results.json"
    args = ["--config", str(CONFIG), f"output_dir={run_dir}", f"data.splits={splits}",
            f"model.pretrained={checkpoint}", f"train.seed={seed}", f"data.train_set={train_set}", *overrides]
    record = run_dir / "bench_args.json"
    # runs recorded before the pre-trained file moved to model.pretrained (same meaning) still resume
    old = [a.replace("model.checkpoint=", "model.pretrained=", 1) for a in json.loads(record.read_text())] \
        if record.exists() else args
    if old != args:
        diff = sorted(set(old) ^ set(args))
        sys.exit(f"error: {run_dir} holds a run with other settings ({', '.join(diff)}); use another --out")
    if not result.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(args))
        train.main([*args, "--eval-only", "--zero-shot"] if zero_shot else args)
    for epoch_dir in sorted((run_dir / "checkpoints").glob("epoch_*")):
        # a finished run needs only its results and its averaged weights (checkpoints/swa_*.pt): every epoch's
        # weights and resume state of the tiny CLIP are ~20 MB, which over an experiment's 72 runs filled 27 GB
        shutil.rmtree(epoch_dir)
    return json.loads(result.read_text())


def yaml_config() -> dict:
    """model/configs/demo.yaml, the setting every run starts from."""
    import yaml
    return yaml.safe_load(CONFIG.read_text())


def pair_hm(result: dict) -> float:
    from model.evaluate import harmonic_mean
    return harmonic_mean(result["base_top1"], result["novel_top1"])


def summarise(results: list[dict]) -> dict:
    from model.evaluate import harmonic_mean, mean_std
    rows = {k: mean_std([r[k] for r in results]) for k in ("base_top1", "novel_top1")}
    rows["hm"] = mean_std([harmonic_mean(r["base_top1"], r["novel_top1"]) for r in results])
    rows["n"] = len(results)
    return rows


def fmt(ms: tuple[float, float]) -> str:
    return f"{ms[0]:5.1f} ± {ms[1]:4.1f}"


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| method | runs | base top-1 | novel top-1 | HM |", "|---|---:|---:|---:|---:|"]
    for name, s in rows:
        lines.append(f"| {name} | {s['n']} | {fmt(s['base_top1'])} | {fmt(s['novel_top1'])} | {fmt(s['hm'])} |")
    return "\n".join(lines)


def experiment(out: Path, *, seeds: list[int], train_sets: list[int], epochs: int, alphas: list[float],
               lambdas: list[float], pretrain_steps: int, pretrain_images: int, groups: int, clips: int, shots: int,
               extra: list[str], ablation_runs: int | None = None, distill_terms: tuple[str, ...] = ("visual", "text"),
               log=say) -> dict:
    start = time.time()
    log("[1/4] pre-training the world CLIP (tools/pretrain_clip.py)")
    ckpt = pretrained_clip(out, steps=pretrain_steps, images=pretrain_images, log=log)
    log("[2/4] the base-to-novel world: generate -> make_shards -> make_splits --from-split-files")
    info = world_dataset(out, groups=groups, clips=clips, shots=shots, train_sets=max(3, *train_sets), log=log)
    sim_mean, sims = class_similarity(ckpt, info["base"], info["novel"])
    splits = out / "splits"
    common = [f"train.epochs={epochs}", *extra]
    pairs = [(s, t) for s in seeds for t in train_sets]
    log(f"[3/4] zero-shot, plain fine-tuning and FROSTER over {len(pairs)} (seed, training set) pairs, "
        f"{epochs} epochs each (model/train.py, model/configs/demo.yaml)")
    methods = {"zero-shot": None, "fine-tuned (λ=0)": ["model.distill_weight=0"], "FROSTER": []}
    results: dict[str, list[dict]] = {label: [] for label in methods}
    t = time.time()
    # no training: one evaluation of the pre-trained CLIP (it does not depend on the pair)
    results["zero-shot"].append(run(out, "zero_shot", common, checkpoint=ckpt, splits=splits, seed=0, train_set=1,
                                    zero_shot=True))
    log(f"      zero-shot: {time.time() - t:.0f} s")
    for s, ts in pairs:   # pair by pair, so that an interrupted run has both methods on the same pairs
        for label, ov in methods.items():
            if ov is None:
                continue
            t = time.time()
            key = "finetune" if ov else "froster"
            r = run(out, key, common + ov, checkpoint=ckpt, splits=splits, seed=s, train_set=ts)
            results[label].append(r)
            log(f"      {label}, seed {s}, training set {ts}: base {r['base_top1']:.1f} novel {r['novel_top1']:.1f} "
                f"({time.time() - t:.0f} s)")
    ab_pairs = pairs[:ablation_runs] if ablation_runs else pairs
    log(f"[4/4] ablations over {len(ab_pairs)} of those pairs")
    ablations: list[tuple[str, dict]] = []
    cfg_alpha, cfg_lambda = 0.1, 2.0
    for a in alphas:
        name = f"FROSTER α={a:g}"
        rs = results["FROSTER"][:len(ab_pairs)] if a == cfg_alpha else [
            run(out, f"alpha{a:g}", common + [f"model.alpha={a}"], checkpoint=ckpt, splits=splits, seed=s,
                train_set=ts) for s, ts in ab_pairs]
        ablations.append((name, summarise(rs)))
    for lam in lambdas:
        name = f"FROSTER λ={lam:g}"
        rs = results["FROSTER"][:len(ab_pairs)] if lam == cfg_lambda else [
            run(out, f"lambda{lam:g}", common + [f"model.distill_weight={lam}"], checkpoint=ckpt, splits=splits,
                seed=s, train_set=ts) for s, ts in ab_pairs]
        ablations.append((name, summarise(rs)))
    for terms in distill_terms:   # which residual distillation terms enter the loss (model.distill_terms)
        rs = [run(out, f"distill_{terms}", common + [f"model.distill_terms={terms}"], checkpoint=ckpt, splits=splits,
                  seed=s, train_set=ts) for s, ts in ab_pairs]
        ablations.append((f"FROSTER {terms}-only distillation", summarise(rs)))
    main_rows = [(k, summarise(v)) for k, v in results.items()]
    gain = main_rows[2][1]["hm"][0] - main_rows[1][1]["hm"][0]
    report = {"main": {k: v for k, v in main_rows}, "ablations": {k: v for k, v in ablations},
              "class_similarity": {"mean_max_cos_novel_to_base": sim_mean, "per_novel_class": dict(zip(info["novel"], sims))},
              "base_classes": info["base"], "novel_classes": info["novel"], "seeds": seeds, "train_sets": train_sets,
              "epochs": epochs, "froster_hm_gain": gain, "wall_s": time.time() - start}
    (out / "fidelity.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def world_arguments(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every world experiment shares (this tool's, tools/bench/order.py's)."""
    from shards.cli import tool_parser
    ap = tool_parser(doc)
    ap.add_argument("--out", required=True, help="folder for everything (re-running resumes)")
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-sets", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's train.epochs")
    ap.add_argument("--pretrain-steps", type=int, default=None)
    ap.add_argument("--pretrain-images", type=int, default=None)
    ap.add_argument("--groups", type=int, default=8, help="UCF groups per class (1 in 4 is the test split)")
    ap.add_argument("--clips", type=int, default=3, help="clips per group")
    ap.add_argument("--shots", type=int, default=8, help="training videos per base class per training set")
    ap.add_argument("overrides", nargs="*", help="extra training config overrides (key.sub=value)")
    return ap


def world_settings(a: argparse.Namespace) -> tuple[Path, dict]:
    """The output folder (made) and the experiment's shared keyword arguments from the parsed options;
    `--quick` is 1 seed x 1 training set, 2 epochs, a short pre-training and a smaller world."""
    from shards.cli import setup_logging
    from tools import pretrain_clip
    setup_logging(a.quiet, a.verbose)
    if a.quick:
        a.seeds, a.train_sets = [0], [1]
        a.epochs = a.epochs or 2
        a.pretrain_steps, a.pretrain_images = a.pretrain_steps or 30, a.pretrain_images or 300
        a.groups, a.clips, a.shots = 4, 1, 2
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return out, dict(seeds=a.seeds, train_sets=a.train_sets, epochs=a.epochs or yaml_config()["train"]["epochs"],
                     pretrain_steps=a.pretrain_steps or pretrain_clip.DEFAULTS["steps"],
                     pretrain_images=a.pretrain_images or pretrain_clip.DEFAULTS["images"], groups=a.groups,
                     clips=a.clips, shots=a.shots, extra=a.overrides)


def main(argv: list[str] | None = None) -> int:
    ap = world_arguments(__doc__, "reduced: 1 seed x 1 training set, 2 epochs, short "
                         "pre-training, one ablation value each (the test's setting)")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.5, 2.0, 8.0])
    ap.add_argument("--distill-terms", nargs="*", default=["visual", "text"], choices=["visual", "text"],
                    help="distillation-term ablations (model.distill_terms): visual-only, text-only")
    ap.add_argument("--ablation-runs", type=int, default=None,
                    help="ablations on the first N (seed, training set) pairs only (default: all)")
    a = ap.parse_args(argv)
    if a.quick:
        a.alphas, a.lambdas = [1.0], [8.0]
    out, settings = world_settings(a)
    rep = experiment(out, **settings, alphas=a.alphas, lambdas=a.lambdas, ablation_runs=a.ablation_runs,
                     distill_terms=tuple(a.distill_terms))
    print()
    print(f"Base-to-novel on the generated world ({len(rep['base_classes'])} base, {len(rep['novel_classes'])} novel "
          f"classes; mean ± std over {len(a.seeds)} seed(s) x {len(a.train_sets)} training set(s), "
          f"{rep['epochs']} epochs):")
    print(table(list(rep["main"].items())))
    print()
    n_ab = next(iter(rep["ablations"].values()))["n"] if rep["ablations"] else 0
    print(f"Ablations (FROSTER; the config's alpha=0.1, lambda=2 otherwise; {n_ab} run(s) each, the first pairs):")
    print(table(list(rep["ablations"].items())))
    print()
    cs = rep["class_similarity"]
    print(f"class similarity (pre-trained CLIP text, novel -> nearest base): mean max cosine "
          f"{cs['mean_max_cos_novel_to_base']:.3f}")
    print(f"wall time: {rep['wall_s']:.0f} s")
    print(f"froster_hm_gain: {rep['froster_hm_gain']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
