#!/usr/bin/env python
"""Does FROSTER help? Zero-shot vs plain fine-tuning vs FROSTER on base and novel classes of the generated world.

    python tools/bench_fidelity.py --out fidelity_out           # the full experiment (about 30 minutes on 2 cores)
    python tools/bench_fidelity.py --out q --quick              # a reduced run (the test's setting)

1. Per pre-training seed (`--pretrain-seeds`) a tiny CLIP is pre-trained on captioned frames of the world
   (tools/pretrain_clip.py; frames without afterimages, so no caption names a motion).
2. Per world seed (`--world-seeds`) a base-to-novel dataset is generated in UCF101's layout with FROSTER's split
   lists (shards/generated/world.py: BASE_CLASSES, NOVEL_CLASSES), converted by make_shards and split by
   make_splits (--from-split-files): 8 base classes, one static look (a red square) in 8 motions that only the clip
   shows, named without the colour ("square moving left"); 8 novel classes, 8 colours no base class has, all
   spinning. Besides the test split: a validation split (base clips of held-out training groups) and the test split
   with static-only class names ("square", "green circle").
3. The sweep: learning rate x epochs for plain fine-tuning and for FROSTER, each trained on the first (pre-training
   seed, world seed, seed, training set) and scored on the base validation clips only. The rule: the highest base
   validation top-1; ties go to fewer epochs, then to the lower learning rate. Novel accuracy is never read.
   All of it on portable CPU kernels (model/kernels.py): the same numbers on every x86-64 machine.
4. Every method runs through model/train.py with model/configs/demo.yaml, from the run's pre-trained CLIP (student
   initialisation and teacher): zero-shot (`--eval-only --zero-shot`, one per pre-training seed x world seed),
   plain fine-tuning (`model.distill_weight=0`) and FROSTER (model.alpha, model.distill_weight of the config or
   the command line) with the chosen settings, over every (pre-training seed, world seed, seed, training set).
5. Controls: every fine-tuned model evaluated on single-frame clips (`data.num_frames=1`, 3 views: frames without
   their neighbours); the zero-shot CLIP with static-only class names. Ablations: alpha, lambda and the
   distillation terms, each its own runs on the first `--ablation-runs` runs.

Statistics: the table's HM is the harmonic mean of mean base and mean novel top-1 (the paper's); ± is the sample
standard deviation over runs. FROSTER against each baseline: the paired per-run HM difference (a zero-shot run
pairs with every trained run of its pre-training seed and world seed) with mean, standard error and the 95 %
t-interval. Prints the criteria (README, "Does FROSTER help?") as PASS/FAIL lines and, last,
`froster_hm_gain_vs_best: X` = FROSTER HM - max(zero-shot HM, fine-tuned HM). Every run resumes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model import kernels  # noqa: F401,E402  (before torch: the same CPU kernels on every x86-64 machine)

CONFIG = REPO / "model" / "configs" / "demo.yaml"
VAL_GROUPS = (2, 6)            # split-1 training groups held out as base validation clips (groups 1, 5 are test)


def say(message: str) -> None:
    print(message, flush=True)


def same_kernels(out: Path) -> None:
    """Refuse an --out whose results were computed with other CPU kernels (model/kernels.py): a rerun resumes
    finished runs, and runs of two kernel sets would mix in one table."""
    path, now = out / "kernels.json", kernels.pinned()
    if path.exists() and json.loads(path.read_text()) != now:
        sys.exit(f"error: {out} holds results computed with other CPU kernels ({json.loads(path.read_text())}, "
                 f"now {now}); use another --out")
    path.write_text(json.dumps(now) + "\n")


# ------------------------------------------------------------------------------------------------------ the inputs
def pretrained_clip(out: Path, *, steps: int, images: int, seed: int = 0, log=say) -> Path:
    """The pre-trained world CLIP of `seed` under out/clip/seed<seed> (made once, reused while its settings stay):
    pre-trained on frames without afterimages, so no frame it sees shows a motion and no caption names one."""
    from tools import pretrain_clip
    path = out / "clip" / f"seed{seed}" / "world_clip.pt"
    settings = {**pretrain_clip.DEFAULTS, "steps": steps, "images": images, "seed": seed, "afterimages": False}
    t = time.time()
    info = pretrain_clip.pretrain(path, **settings, log=lambda m: log("      " + m))
    log(f"      pre-trained CLIP (seed {seed}): {path} (held-out zero-shot {info['zero_shot_untrained']:.1f} % "
        f"untrained -> {info['zero_shot_trained']:.1f} % trained; {time.time() - t:.0f} s)")
    return path


def world_dataset(out: Path, *, groups: int, clips: int, shots: int, train_sets: int, frames: int = 16,
                  seed: int = 0, workers: int = 1, shard_size: str = "512MB", order: str = "shuffled",
                  val_groups: tuple[int, ...] = (), afterimage: bool = True, log=say) -> dict:
    """Generate -> make_shards (`shard_size`, `order`) -> make_splits (skipping what is done) under `out`: splits/
    (the test split), and with `val_groups` also splits_val/ (base validation clips) and splits_static/ (the test
    split with static-only class names). Returns the class lists and the number of shards."""
    from shards.convert import convert_dataset
    from shards.generated import world

    raw, store = out / "raw", out / "shards"
    settings = {"groups": groups, "clips": clips, "shots": shots, "train_sets": train_sets, "frames": frames,
                "seed": seed, "val_groups": list(val_groups), "afterimage": afterimage,
                "fixed": world.EXPERIMENT_NUISANCE, "speeds": world.SPEEDS, "trail": world.TRAIL,
                "ghosts": world.GHOSTS,
                "base": [c.prompt for c in world.BASE_CLASSES], "novel": [c.prompt for c in world.NOVEL_CLASSES]}
    done = raw / ".complete"
    if done.exists() and json.loads(done.read_text())["settings"] != json.loads(json.dumps(settings)):
        sys.exit(f"error: {raw} holds a world made with other settings; use another --out")
    t = time.time()
    if not done.exists():
        shutil.rmtree(raw, ignore_errors=True)
        ds = world.make_b2n_ucf101(str(raw), list(world.BASE_CLASSES), list(world.NOVEL_CLASSES), groups=groups,
                                   clips=clips, shots=shots, num_train_sets=train_sets, frames=frames, seed=seed,
                                   val_groups=tuple(val_groups), afterimage=afterimage,
                                   fixed=world.EXPERIMENT_NUISANCE)
        every = list(world.BASE_CLASSES) + list(world.NOVEL_CLASSES)
        done.write_text(json.dumps({"settings": settings, "class_names": ds.class_names,
                                    "static_names": {c.name: c.static_prompt for c in every},
                                    "base": [c.prompt for c in ds.base], "novel": [c.prompt for c in ds.novel]}))
    info = json.loads(done.read_text())
    summary = convert_dataset("ucf101", str(raw), str(store), workers=workers, short_side=32, progress=False,
                              shard_size=shard_size, order=order)
    info["shards"] = summary.shards
    log(f"      world (seed {seed}): {len(info['base'])} base + {len(info['novel'])} novel classes, {summary.samples} "
        f"videos in {summary.shards} shard(s), {sum(summary.rejects.values())} rejects ({time.time() - t:.0f} s)")
    make = [("splits", "zs_label_db", info["class_names"])]
    if val_groups:
        make += [("splits_val", "zs_label_db_val", info["class_names"]),
                 ("splits_static", "zs_label_db", info["static_names"])]
    for folder, lists, names in make:
        write_splits(store, out / folder, raw / lists, names, shots=shots, seed=seed, train_sets=train_sets)
    return info


def write_splits(store: Path, split_dir: Path, lists: Path, class_names: dict, *, shots: int, seed: int,
                 train_sets: int) -> None:
    """make_splits --from-split-files `lists` --class-names `class_names` into `split_dir` (once)."""
    from shards import splits
    if (split_dir / "base2novel" / "ucf101" / "eval_novel.parquet").exists():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = splits.Manifest.load(str(store), "ucf101")
        plan = splits.base2novel(m, shots=shots, seed=seed, num_train_sets=train_sets,
                                 class_names=json.dumps(class_names), split_files=str(lists), split_format="froster")
        splits.write_plan(plan, str(split_dir))


# ---------------------------------------------------------------------------------------------------------- runs
def run(out: Path, name: str, overrides: list[str], *, checkpoint: Path, splits: Path, seed: int, train_set: int,
        zero_shot: bool = False, tag: str = "", weights: str | None = None) -> dict:
    """One model/train.py run (train + evaluate, the zero-shot evaluation, or with `weights` the evaluation of
    those student weights) in out/runs/<name>[/<tag>]/seed<seed>_set<train_set>; reuses a finished one."""
    from model import train
    run_dir = out / "runs" / name / tag / f"seed{seed}_set{train_set}"
    result = run_dir / ("zero_shot" if zero_shot else "") / "results.json"
    args = ["--config", str(CONFIG), f"output_dir={run_dir}", f"data.splits={splits}",
            f"model.pretrained={checkpoint}", f"train.seed={seed}", f"data.train_set={train_set}", *overrides]
    record = run_dir / "bench_args.json"
    old = json.loads(record.read_text()) if record.exists() else args
    if old != args:
        diff = sorted(set(old) ^ set(args))
        sys.exit(f"error: {run_dir} holds a run with other settings ({', '.join(diff)}); use another --out")
    if not result.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(args))
        mode = ["--eval-only", "--zero-shot"] if zero_shot else ["--eval-only", "--weights", weights] if weights else []
        with open(run_dir / "train_stdout.txt", "w") as printed, contextlib.redirect_stdout(printed):
            train.main([*args, *mode, "--quiet"])     # its results table goes to the run's folder
    for epoch_dir in sorted((run_dir / "checkpoints").glob("epoch_*")):
        # a finished run needs only its results and its averaged weights (checkpoints/swa_*.pt): every epoch's
        # weights and resume state of the tiny CLIP are ~20 MB, which over an experiment's runs fill gigabytes
        shutil.rmtree(epoch_dir)
    return json.loads(result.read_text())


def yaml_config() -> dict:
    """model/configs/demo.yaml, the setting every run starts from."""
    import yaml
    return yaml.safe_load(CONFIG.read_text())


def pair_hm(result: dict) -> float:
    from model.evaluate import harmonic_mean
    return harmonic_mean(result["base_top1"], result["novel_top1"])


def sample_std(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def summarise(results: list[dict]) -> dict:
    """Mean and sample std of base and novel top-1 over the runs; HM of the two means (the paper's)."""
    from model.evaluate import harmonic_mean
    base = [r["base_top1"] for r in results]
    novel = [r["novel_top1"] for r in results]
    mb, mn = sum(base) / len(base), sum(novel) / len(novel)
    return {"base_top1": (mb, sample_std(base)), "novel_top1": (mn, sample_std(novel)),
            "hm": harmonic_mean(mb, mn), "run_hm_std": sample_std([pair_hm(r) for r in results]), "n": len(results)}


def paired(a: list[float], b: list[float]) -> dict:
    """Per-run differences a - b: mean, sample std, standard error and the 95 % t-interval of the mean."""
    from scipy import stats
    d = [x - y for x, y in zip(a, b, strict=True)]
    n, mean = len(d), sum(d) / len(d)
    sd = sample_std(d)
    se = sd / math.sqrt(n) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.975, n - 1)) * se if n > 1 else float("nan")
    return {"n": n, "mean": mean, "sd": sd, "se": se, "ci95": (mean - half, mean + half), "diffs": d,
            "better": sum(x > 0 for x in d), "worse": sum(x < 0 for x in d)}


def fmt(ms: tuple[float, float]) -> str:
    """mean ± sample std; the mean alone for one run (a sample std needs two)."""
    return f"{ms[0]:5.1f} ± {ms[1]:4.1f}" if math.isfinite(ms[1]) else f"{ms[0]:5.1f}"


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| method | runs | base top-1 | novel top-1 | HM | per-run HM sample std |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in rows:
        spread = f"{s['run_hm_std']:4.1f}" if math.isfinite(s["run_hm_std"]) else "-"
        lines.append(f"| {name} | {s['n']} | {fmt(s['base_top1'])} | {fmt(s['novel_top1'])} | {s['hm']:5.1f} | "
                     f"{spread} |")
    return "\n".join(lines)


def choose(points: list[dict]) -> dict:
    """The sweep's rule: the highest base validation top-1; ties to fewer epochs, then to the lower lr."""
    return sorted(points, key=lambda p: (-round(p["val_base_top1"], 6), p["epochs"], p["lr"]))[0]


def criteria(zs: dict, ft: dict, fr: dict, vs_best: dict) -> list[tuple[str, bool, str]]:
    """The pre-registered criteria (README, "Does FROSTER help?") on the runs' means."""
    zb, zn, fb, fn = zs["base_top1"][0], zs["novel_top1"][0], ft["base_top1"][0], ft["novel_top1"][0]
    best = max(zs["hm"], ft["hm"])
    lo = vs_best["ci95"][0]
    return [
        ("1 zero-shot base top-1 <= 60", bool(zb <= 60), f"{zb:.1f}"),
        ("2 fine-tuned base >= zero-shot base + 25", bool(fb >= zb + 25), f"{fb:.1f} vs {zb + 25:.1f}"),
        ("3 fine-tuned novel <= zero-shot novel - 10", bool(fn <= zn - 10), f"{fn:.1f} vs {zn - 10:.1f}"),
        ("4 FROSTER HM > max(zero-shot HM, fine-tuned HM), paired 95 % interval above 0",
         bool(fr["hm"] > best and lo > 0), f"{fr['hm']:.1f} vs {best:.1f}; interval lower end {lo:+.2f}"),
    ]


class LazyDict(dict):
    """A dict that makes a missing value with `make(key)` when first asked for it."""
    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        self[key] = value = self.make(key)
        return value


def experiment(out: Path, *, seeds: list[int], train_sets: list[int], pretrain_seeds: list[int],
               world_seeds: list[int], sweep_lrs: list[float], sweep_epochs: list[int], alphas: list[float],
               lambdas: list[float], pretrain_steps: int, pretrain_images: int, groups: int, clips: int, shots: int,
               lrs: list[float] = (),
               extra: list[str], ablation_runs: int | None = None, distill_terms: tuple[str, ...] = ("visual", "text"),
               val_groups: tuple[int, ...] = VAL_GROUPS, epochs: int | None = None, log=say) -> dict:
    import torch
    torch.set_num_threads(2)        # fixed thread count: the same sums in the same order on every run
    same_kernels(out)               # and the same CPU kernels (model/kernels.py)
    start = time.time()
    log(f"[1/6] pre-training the world CLIP (tools/pretrain_clip.py), seeds {pretrain_seeds} (each when first "
        f"needed)")
    ckpts = LazyDict(lambda p: pretrained_clip(out, steps=pretrain_steps, images=pretrain_images, seed=p, log=log))
    log(f"[2/6] the base-to-novel world, seeds {world_seeds}: generate -> make_shards -> make_splits (each when "
        f"first needed)")
    worlds = LazyDict(lambda w: world_dataset(out / f"world{w}", groups=groups, clips=clips, shots=shots,
                                              train_sets=max(3, *train_sets), seed=w, val_groups=val_groups, log=log))
    info = worlds[world_seeds[0]]

    def split_dir(w: int, kind: str = "splits") -> Path:
        worlds[w]    # made when first needed
        return out / f"world{w}" / kind
    # runs ordered so that the first ones span the pre-training and world seeds (the ablations take the first)
    runs = [(p, w, s, t) for s in seeds for t in train_sets for p in pretrain_seeds for w in world_seeds]

    def tag(p, w):
        return f"pretrain{p}_world{w}"

    p0, w0, s0, t0 = runs[0]
    log(f"[3/6] the sweep on base validation clips (pre-training seed {p0}, world seed {w0}, seed {s0}, training "
        f"set {t0}): lr {sweep_lrs} x epochs {sweep_epochs}")
    methods = {"fine-tuned (λ=0)": ("finetune", ["model.distill_weight=0"]), "FROSTER": ("froster", [])}
    sweep: dict[str, list[dict]] = {}
    chosen: dict[str, dict] = {}
    for label, (key, ov) in methods.items():
        sweep[label] = []
        for lr in sweep_lrs:
            for ep in sweep_epochs:
                r = run(out, f"sweep_{key}_lr{lr:g}_ep{ep}", [f"train.lr={lr}", f"train.epochs={ep}", *extra, *ov],
                        checkpoint=ckpts[p0], splits=split_dir(w0, "splits_val"), seed=s0, train_set=t0,
                        tag=tag(p0, w0))
                sweep[label].append({"lr": lr, "epochs": ep, "val_base_top1": r["base_top1"]})
                log(f"      {label}, lr {lr:g}, {ep} epochs: base validation top-1 {r['base_top1']:.1f}")
        chosen[label] = choose(sweep[label])
        if epochs is not None:   # --epochs overrides the sweep's choice of epochs (said in the output)
            chosen[label] = {**chosen[label], "epochs": epochs}
        log(f"      chosen for {label}: lr {chosen[label]['lr']:g}, {chosen[label]['epochs']} epochs")
    # the command line's overrides (model.alpha=..., model.distill_weight=...) reach every run, except that plain
    # fine-tuning stays lambda = 0
    setting = {label: [f"train.lr={chosen[label]['lr']}", f"train.epochs={chosen[label]['epochs']}", *extra,
                       *methods[label][1]] for label in methods}

    log(f"[4/6] zero-shot ({len(pretrain_seeds) * len(world_seeds)} runs), plain fine-tuning and FROSTER "
        f"({len(runs)} runs each)")
    zs = {(p, w): run(out, "zero_shot", extra, checkpoint=ckpts[p], splits=split_dir(w), seed=0,
                      train_set=1, zero_shot=True, tag=tag(p, w)) for p in pretrain_seeds for w in world_seeds}
    results: dict[str, list[dict]] = {label: [] for label in methods}
    for p, w, s, t in runs:    # run by run, so that an interrupted experiment has both methods on the same runs
        for label, (key, _) in methods.items():
            tic = time.time()
            r = run(out, key, setting[label], checkpoint=ckpts[p], splits=split_dir(w), seed=s,
                    train_set=t, tag=tag(p, w))
            results[label].append(r)
            log(f"      {label}, pre-training {p}, world {w}, seed {s}, set {t}: base {r['base_top1']:.1f} "
                f"novel {r['novel_top1']:.1f} ({time.time() - tic:.0f} s)")

    log("[5/6] controls: fine-tuned models on single-frame clips; zero-shot with static-only class names")
    single = [run(out, "control_single_frame", setting["fine-tuned (λ=0)"] + ["data.num_frames=1"],
                  checkpoint=ckpts[p], splits=split_dir(w), seed=s, train_set=t, tag=tag(p, w),
                  weights=r["weights"]) for (p, w, s, t), r in zip(runs, results["fine-tuned (λ=0)"])]
    static = [run(out, "control_static_prompts", extra, checkpoint=ckpts[p], splits=split_dir(w, "splits_static"),
                  seed=0, train_set=1, zero_shot=True, tag=tag(p, w))
              for p in pretrain_seeds for w in world_seeds]

    ab_runs = runs[:ablation_runs] if ablation_runs else runs
    log(f"[6/6] ablations (FROSTER's setting, one thing changed) over the first {len(ab_runs)} runs")
    ablations: dict[str, list[dict]] = {}
    variants = [(f"FROSTER α={a:g}", f"alpha{a:g}", [f"model.alpha={a}"]) for a in alphas]
    variants += [(f"FROSTER λ={lam:g}", f"lambda{lam:g}", [f"model.distill_weight={lam}"]) for lam in lambdas]
    variants += [(f"FROSTER lr={lr:g}", f"lr{lr:g}", [f"train.lr={lr}"]) for lr in lrs]
    variants += [(f"FROSTER {t}-only distillation", f"distill_{t}", [f"model.distill_terms={t}"])
                 for t in distill_terms]
    for label, key, ov in variants:
        ablations[label] = [run(out, key, setting["FROSTER"] + ov, checkpoint=ckpts[p], splits=split_dir(w), seed=s,
                                train_set=t, tag=tag(p, w)) for p, w, s, t in ab_runs]

    zs_paired = [zs[(p, w)] for p, w, _, _ in runs]
    rows = {"zero-shot": summarise(list(zs.values())), "fine-tuned (λ=0)": summarise(results["fine-tuned (λ=0)"]),
            "FROSTER": summarise(results["FROSTER"])}
    fr_hm = [pair_hm(r) for r in results["FROSTER"]]
    vs = {"zero-shot": paired(fr_hm, [pair_hm(r) for r in zs_paired]),
          "fine-tuned (λ=0)": paired(fr_hm, [pair_hm(r) for r in results["fine-tuned (λ=0)"]])}
    best = max(("zero-shot", "fine-tuned (λ=0)"), key=lambda k: rows[k]["hm"])
    crit = criteria(rows["zero-shot"], rows["fine-tuned (λ=0)"], rows["FROSTER"], vs[best])
    controls = {"fine-tuned (λ=0), 4-frame clips": rows["fine-tuned (λ=0)"],
                "fine-tuned (λ=0), single-frame clips": summarise(single),
                "zero-shot, full class names": rows["zero-shot"],
                "zero-shot, static-only class names": summarise(static)}
    report = {
        "main": rows, "paired_vs": vs, "best_baseline": best, "criteria": crit, "controls": controls,
        "ablations": {k: summarise(v) for k, v in ablations.items()},
        "ablation_hm_vs_froster": {k: paired([pair_hm(r) for r in v], fr_hm[:len(v)]) for k, v in ablations.items()},
        "sweep": sweep, "chosen": chosen, "runs": [list(r) for r in runs],
        "per_run": {label: [{"base": r["base_top1"], "novel": r["novel_top1"], "hm": pair_hm(r)} for r in rs]
                    for label, rs in [("zero-shot (paired)", zs_paired), *results.items()]},
        "base_classes": info["base"], "novel_classes": info["novel"], "seeds": seeds, "train_sets": train_sets,
        "pretrain_seeds": pretrain_seeds, "world_seeds": world_seeds,
        "froster_hm_gain_vs_best": rows["FROSTER"]["hm"] - rows[best]["hm"], "wall_s": time.time() - start}
    (out / "fidelity.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def world_arguments(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every world experiment shares (this tool's, tools/bench/order.py's)."""
    from shards.cli import tool_parser
    ap = tool_parser(doc)
    ap.add_argument("--out", required=True, help="folder for everything (re-running resumes)")
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (train.seed)")
    ap.add_argument("--train-sets", type=int, nargs="+", default=[1], help="few-shot training sets")
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's train.epochs (bench_fidelity: "
                    "the sweep's choice)")
    ap.add_argument("--pretrain-steps", type=int, default=None)
    ap.add_argument("--pretrain-images", type=int, default=None)
    ap.add_argument("--groups", type=int, default=8, help="UCF groups per class (1 in 4 is the test split)")
    ap.add_argument("--clips", type=int, default=15, help="clips per group")
    ap.add_argument("--shots", type=int, default=16, help="training videos per base class per training set")
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


def report_text(rep: dict) -> str:
    """The tables, the criteria lines and the last line."""
    m, lines = rep["main"], []
    n_runs = m["FROSTER"]["n"]
    lines += [f"Base-to-novel on the generated world ({len(rep['base_classes'])} base, {len(rep['novel_classes'])} "
              f"novel classes; {n_runs} runs = pre-training seeds {rep['pretrain_seeds']} x world seeds "
              f"{rep['world_seeds']} x seeds {rep['seeds']} x training sets {rep['train_sets']}; zero-shot: one run "
              f"per pre-training seed x world seed). HM = harmonic mean of mean base and mean novel top-1; "
              f"± = sample standard deviation over runs:", table(list(m.items())), ""]
    lines.append("FROSTER's HM minus each baseline's, paired per run (sample std, standard error, 95 % t-interval):")
    lines += ["| against | runs | mean | sample std | standard error | 95 % interval | better / worse |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for k, d in rep["paired_vs"].items():
        lines.append(f"| {k} | {d['n']} | {d['mean']:+.2f} | {d['sd']:.2f} | {d['se']:.2f} | "
                     f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] | {d['better']} / {d['worse']} |")
    lines += ["", "The sweep (base validation top-1; first run's seeds; rule: highest, ties to fewer epochs then "
              "lower lr):", "| method | lr | epochs | base validation top-1 | chosen |", "|---|---:|---:|---:|:---:|"]
    for label, pts in rep["sweep"].items():
        for p in pts:
            mark = "✓" if (p["lr"], p["epochs"]) == (rep["chosen"][label]["lr"], rep["chosen"][label]["epochs"]) \
                else ""
            lines.append(f"| {label} | {p['lr']:g} | {p['epochs']} | {p['val_base_top1']:.1f} | {mark} |")
    lines += ["", "Controls:", table(list(rep["controls"].items())), ""]
    n_ab = next(iter(rep["ablations"].values()))["n"] if rep["ablations"] else 0
    if not n_ab:
        lines.append("Ablations: none asked for (--alphas, --lambdas, --lrs, --distill-terms).")
    else:
        lines.append(f"Ablations (FROSTER's setting with one thing changed; each row its own {n_ab} run(s), the "
                     f"first runs; last column: paired HM difference to FROSTER's same runs, mean [95 % interval]):")
        lines += ["| method | runs | base top-1 | novel top-1 | HM | per-run HM sample std | vs FROSTER |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for k, s in rep["ablations"].items():
            d = rep["ablation_hm_vs_froster"][k]
            lines.append(f"| {k} | {s['n']} | {fmt(s['base_top1'])} | {fmt(s['novel_top1'])} | {s['hm']:5.1f} | "
                         f"{s['run_hm_std']:4.1f} | {d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] |")
    lines += ["", f"wall time: {rep['wall_s']:.0f} s", "criteria (README, \"Does FROSTER help?\"):"]
    for name, ok, detail in rep["criteria"]:
        lines.append(f"{'PASS' if ok else 'FAIL'}: {name} ({detail})")
    lines.append(f"froster_hm_gain_vs_best: {rep['froster_hm_gain_vs_best']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = world_arguments(__doc__, "reduced: 1 of each seed, a 2-point sweep of 2-3 epochs, short "
                         "pre-training, a small world, one ablation value each (the test's setting)")
    ap.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0, 1], help="pre-training seeds of the CLIP")
    ap.add_argument("--world-seeds", type=int, nargs="+", default=[0, 1],
                    help="seeds of the generated videos (training, validation and test clips)")
    ap.add_argument("--sweep-lrs", type=float, nargs="+", default=[3e-4, 1e-3])
    ap.add_argument("--sweep-epochs", type=int, nargs="+", default=[40, 80])
    ap.add_argument("--alphas", type=float, nargs="*", default=[1.0], help="ablation: model.alpha values")
    ap.add_argument("--lambdas", type=float, nargs="*", default=[8.0], help="ablation: model.distill_weight values")
    ap.add_argument("--lrs", type=float, nargs="*", default=[], help="ablation: train.lr values for FROSTER (its "
                    "chosen epochs), e.g. plain fine-tuning's chosen learning rate")
    ap.add_argument("--distill-terms", nargs="*", default=[], choices=["visual", "text"],
                    help="distillation-term ablations (model.distill_terms): visual-only, text-only")
    ap.add_argument("--ablation-runs", type=int, default=2,
                    help="ablations on the first N runs only (0: all)")
    a = ap.parse_args(argv)
    epochs_given = a.epochs
    if a.quick:
        a.pretrain_seeds, a.world_seeds = a.pretrain_seeds[:1], a.world_seeds[:1]
        a.sweep_lrs, a.sweep_epochs = a.sweep_lrs[-1:], [2, 3]
        a.alphas, a.lambdas, a.distill_terms, a.ablation_runs = a.alphas[:1], a.lambdas[:1], ["visual"], 1
    out, settings = world_settings(a)
    settings["epochs"] = epochs_given
    if a.quick:
        settings.update(groups=4, clips=2, shots=2)
    rep = experiment(out, **settings, pretrain_seeds=a.pretrain_seeds, world_seeds=a.world_seeds,
                     sweep_lrs=a.sweep_lrs, sweep_epochs=a.sweep_epochs, alphas=a.alphas, lambdas=a.lambdas,
                     lrs=a.lrs, ablation_runs=a.ablation_runs or None, distill_terms=tuple(a.distill_terms),
                     val_groups=(2,) if a.quick else VAL_GROUPS)
    print()
    print(report_text(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
