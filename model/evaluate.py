"""Evaluation: the papers' metrics, 3 temporal views x 1 crop with summed logits, on every rank, each clip once.

    python model/evaluate.py --config FILE [--zero-shot] [--weights PATH] [key.sub=value ...]
    python model/evaluate.py --config RUN_DIR                  # a run folder: its config.yaml and trained weights
    accelerate launch model/evaluate.py --config FILE            # all ranks share the work
    accelerate launch model/train.py --config FILE --eval-only   # the same thing from the recipe

Base-to-novel: base accuracy on ``eval_base`` among the base classes, novel accuracy on ``eval_novel`` among the novel
classes, HM = 2BN/(B+N). Cross-dataset: top-1/top-5 on each of the 3 splits, their mean and std (population std,
numpy's default), and the full set where it exists. All accuracies are in percent. Writes ``results.json`` and
``results.md`` into ``output_dir`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python model/evaluate.py` runs this file as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import omp  # noqa: F401,E402  (first: OpenMP threads must sleep while they wait; before torch)

import torch  # noqa: E402
from accelerate.logging import get_logger  # noqa: E402
from tqdm import tqdm  # noqa: E402

from model.build import build_eval_model  # noqa: E402
from model.config import Config, load_config  # noqa: E402
from model.launch import die_with_parent, is_main_rank, launched, make_accelerator  # noqa: E402
from model.data import build_loader, data_health, split_exists, split_paths  # noqa: E402
from shards.cli import add_logging_flags, run as guarded, setup_logging  # noqa: E402
from shards.storage.lock import output_lock  # noqa: E402

log = get_logger("model.evaluate")


# ----------------------------------------------------------------------------------------------------------- metrics
def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """Top-k accuracy in percent for each k (k is clipped to the number of classes)."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits [N, C] and labels [N], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    n, c = logits.shape
    if n == 0:
        raise ValueError("no samples to score")
    top = logits.float().topk(min(max(ks), c), dim=1).indices
    hit = top == labels.view(-1, 1)
    return {k: 100.0 * hit[:, :min(k, c)].any(dim=1).double().mean().item() for k in ks}


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2BN / (B + N); 0 when both are 0."""
    return 0.0 if base + novel == 0 else 2.0 * base * novel / (base + novel)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (what the papers' mean +- std over 3 splits uses)."""
    if not values:
        raise ValueError("mean_std of no values")
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


@dataclass
class ViewSums:
    """Per-clip sums of logits over its temporal views, keyed by sample key (what one rank has seen)."""
    logits: dict[str, torch.Tensor] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    views: dict[str, int] = field(default_factory=dict)

    def add(self, keys: list[str], logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None):
        """Add a batch of (clip, view) rows; rows with ``valid == False`` are padding and are ignored."""
        logits, labels = logits.detach().float().cpu(), labels.cpu()
        valid = torch.ones(len(keys), dtype=torch.bool) if valid is None else valid.cpu().bool()
        for i, key in enumerate(keys):
            if not valid[i]:
                continue
            label = int(labels[i])
            if key in self.logits:
                if self.labels[key] != label:
                    raise ValueError(f"sample {key}: views disagree on the label ({self.labels[key]} vs {label})")
                self.logits[key] = self.logits[key] + logits[i]
                self.views[key] += 1
            else:
                self.logits[key], self.labels[key], self.views[key] = logits[i].clone(), label, 1

    def merge(self, other: "ViewSums") -> "ViewSums":
        """Combine two ranks' sums: a clip whose views landed on several ranks is still one clip."""
        out = ViewSums(dict(self.logits), dict(self.labels), dict(self.views))
        for key, lg in other.logits.items():
            out.add([key], lg[None], torch.tensor([other.labels[key]]))
            out.views[key] += other.views[key] - 1
        return out

    def stacked(self) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        keys = sorted(self.logits)
        if not keys:
            return [], torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
        return keys, torch.stack([self.logits[k] for k in keys]), torch.tensor([self.labels[k] for k in keys])


def gather_view_sums(sums: ViewSums, accelerator=None) -> ViewSums:
    """All ranks' sums merged (on every rank); each clip counted once however the views were distributed."""
    if accelerator is None or accelerator.num_processes == 1:
        return sums
    from accelerate.utils import gather_object
    parts = gather_object([(sums.logits, sums.labels, sums.views)])
    merged = ViewSums()
    for lg, lb, vw in parts:
        merged = merged.merge(ViewSums(lg, lb, vw))
    return merged


def score(sums: ViewSums, num_classes: int, expected_views: int | None = None) -> dict:
    """top1/top5 (percent) and counts for one split's merged view sums."""
    keys, logits, labels = sums.stacked()
    if not keys:
        raise ValueError("no samples were evaluated")
    if logits.shape[1] != num_classes:
        raise ValueError(f"logits have {logits.shape[1]} classes, the split has {num_classes}")
    acc = topk_accuracy(logits, labels, (1, 5))
    out = {"top1": acc[1], "top5": acc[5], "num_samples": len(keys), "num_classes": num_classes}
    if expected_views is not None:
        short = sum(1 for k in keys if sums.views[k] != expected_views)
        if short:
            out["samples_with_other_view_count"] = short
    return out


# ------------------------------------------------------------------------------------------------------ result shapes
def base2novel_results(dataset: str, base: dict, novel: dict) -> dict:
    """The B2N results.json (accuracies in percent)."""
    return {"protocol": "base2novel", "dataset": dataset,
            "base_top1": base["top1"], "novel_top1": novel["top1"], "hm": harmonic_mean(base["top1"], novel["top1"]),
            "base_top5": base["top5"], "novel_top5": novel["top5"],
            "num_base_classes": base["num_classes"], "num_novel_classes": novel["num_classes"],
            "num_base_samples": base["num_samples"], "num_novel_samples": novel["num_samples"]}


def cross_results(per_dataset: dict[str, dict[str, dict]]) -> dict:
    """The cross-dataset results.json: per dataset, each split's scores, mean/std over splits 1..3, and full."""
    out = {"protocol": "cross", "datasets": {}}
    for ds, splits in per_dataset.items():
        numbered = [splits[s] for s in sorted(splits) if s != "full"]
        entry = {"splits": {s: splits[s] for s in sorted(splits) if s != "full"}}
        for metric in ("top1", "top5"):
            m, s = mean_std([r[metric] for r in numbered])
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = m, s
        if "full" in splits:
            entry["full"] = splits["full"]
        out["datasets"][ds] = entry
    return out


def markdown_table(results: dict) -> str:
    """The results as a Markdown table, the way the papers print them."""
    if results["protocol"] == "base2novel":
        r = results
        return ("| dataset | base top-1 | novel top-1 | HM | base classes | novel classes |\n"
                "|---|---:|---:|---:|---:|---:|\n"
                f"| {r['dataset']} | {r['base_top1']:.2f} | {r['novel_top1']:.2f} | {r['hm']:.2f} "
                f"| {r['num_base_classes']} | {r['num_novel_classes']} |\n")
    lines = ["| dataset | split | top-1 | top-5 | classes | samples |", "|---|---|---:|---:|---:|---:|"]
    for ds, e in results["datasets"].items():
        for s, r in e["splits"].items():
            lines.append(f"| {ds} | {s} | {r['top1']:.2f} | {r['top5']:.2f} | {r['num_classes']} | {r['num_samples']} |")
        lines.append(f"| {ds} | mean ± std | {e['top1_mean']:.2f} ± {e['top1_std']:.2f} "
                     f"| {e['top5_mean']:.2f} ± {e['top5_std']:.2f} | | |")
        if "full" in e:
            r = e["full"]
            lines.append(f"| {ds} | full | {r['top1']:.2f} | {r['top5']:.2f} | {r['num_classes']} | {r['num_samples']} |")
    return "\n".join(lines) + "\n"


def write_results(results: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    j, m = out_dir / "results.json", out_dir / "results.md"
    j.write_text(json.dumps(results, indent=2) + "\n")
    m.write_text(markdown_table(results))
    return j, m


# ------------------------------------------------------------------------------------------------------- the runner
class EvaluationError(ValueError):
    """An evaluation that must not produce results: an unfinished run, a split not covered."""


def resolve_weights(cfg: Config) -> Path:
    """eval.weights -> a file: "average" (swa_{from}_{last}.pt, made on demand), "last" (the last epoch), or a path.

    A run's own weights always win over its starting weights: a finished run whose epoch folders were removed
    (tools/demo.py keeps only checkpoints/swa_*.pt) evaluates its average (`final_average`). Only a folder where no
    training happened (no checkpoints/ at all) whose model.pretrained is a weights file evaluates that file (released
    FROSTER, Open-VCLIP, ViFi-CLIP weights through the normal path). Anything else is an error naming what was
    looked for."""
    from model.average import average_checkpoints, epoch_weights
    ckpt = Path(cfg.output_dir) / "checkpoints"
    w = cfg.eval.weights
    if w not in ("average", "last"):
        if not Path(w).is_file():
            raise FileNotFoundError(f"eval.weights: no such file {w}")
        return Path(w)
    epochs = epoch_weights(ckpt)
    if not epochs:
        final = final_average(ckpt, cfg)
        if final is not None:
            return final
        from model.build import pretrained
        from model.clip import is_weights_path
        spec = pretrained(cfg)
        if not ckpt.exists() and spec is not None and is_weights_path(spec):  # released weights, evaluated as they are
            if not Path(spec).expanduser().is_file():
                raise FileNotFoundError(f"model.pretrained: no such file {spec}")
            return Path(spec).expanduser()
        raise FileNotFoundError(f"{ckpt}: no trained weights (looked for epoch_*/model.pt and swa_*.pt); train first, "
                                f"or pass --weights PATH, model.pretrained=PATH (released weights) or --zero-shot")
    last = max(epochs)
    if last < cfg.train.epochs and not cfg.eval.allow_partial:
        raise EvaluationError(f"{ckpt}: training has finished {last} of {cfg.train.epochs} epochs; finish it (the "
                              f"same command without --eval-only) or evaluate what is there with --allow-partial")
    if w == "last":
        return epochs[last]
    path = ckpt / f"swa_{cfg.train.average_from}_{last}.pt"
    if cfg.train.average_from > last:  # a partial run that has not reached the averaged epochs yet
        return epochs[last]
    return path if path.exists() else average_checkpoints(ckpt, cfg.train.average_from, last, path)


def final_average(ckpt: Path, cfg: Config) -> Path | None:
    """The averaged weights a finished run left in `ckpt` (checkpoints/swa_{from}_{to}.pt) when its epoch folders
    are gone: the configured swa_{average_from}_{epochs}.pt, else the one that ends last; None when there is none."""
    found = sorted(ckpt.glob("swa_*_*.pt")) if ckpt.is_dir() else []
    ends = {}
    for f in found:
        parts = f.stem.split("_")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            ends[f] = (int(parts[2]), int(parts[1]) == cfg.train.average_from)
    if not ends:
        return None
    wanted = ckpt / f"swa_{cfg.train.average_from}_{cfg.train.epochs}.pt"
    return wanted if wanted in ends else max(ends, key=ends.get)


def eval_precision(cfg: Config, device: torch.device):
    """fp32 by default, as the official evaluation; eval.precision=bf16|fp16 autocasts (faster, see docs/fidelity.md)."""
    if cfg.eval.precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if cfg.eval.precision == "bf16"
                          else torch.float16)


@torch.no_grad()
def evaluate_split(model, url: str, cfg: Config, accelerator, zero_shot: bool, dataset: str | None = None) -> dict:
    """Score one split file: every rank predicts its share, view logits are summed, ranks merged. `dataset` spells
    the classes' names as the official name-only files do (the 28-template zero-shot baseline)."""
    from model import prompts
    loader = build_loader(url, cfg, accelerator, train=False, batch_size=cfg.eval.batch_size)
    model.set_classes(prompts.class_texts(loader.classes), names=prompts.name_only(loader.classes, dataset))
    sums = ViewSums()
    bar = tqdm(loader, desc=url.rsplit("/", 1)[-1], unit="batch", dynamic_ncols=True, leave=False,
               disable=not (cfg.train.progress and accelerator.is_main_process))
    for batch in bar:
        with eval_precision(cfg, accelerator.device):
            logits = model.predict(batch.clips.to(accelerator.device), zero_shot=zero_shot)
        sums.add(batch.keys, logits, batch.labels, batch.valid)
    merged = gather_view_sums(sums, accelerator)
    if not merged.logits:  # every sample undecodable: no accuracy to report, however max_missing is set
        raise EvaluationError(f"{url}: none of its {loader.stats.get('rows', len(loader.table))} samples could be "
                              f"decoded; nothing to evaluate (repair the shards: verify_shards)")
    result = score(merged, len(loader.classes), cfg.data.num_views)
    if loader.stats.get("decode_errors"):
        result["decode_errors"] = int(loader.stats["decode_errors"])
    result["data"] = {**data_health(loader, accelerator), "evaluated": result["num_samples"]}
    return result


def allowed_missing(max_missing: int | float, rows: int) -> float:
    """eval.max_missing as a number of samples: a count, or a fraction (below 1) of the split's rows."""
    return max_missing * rows if isinstance(max_missing, float) and max_missing < 1 else max_missing


def coverage_problem(url: str, health: dict, max_missing: int | float) -> str | None:
    """Why the split's evaluation does not count (fewer samples evaluated than eval.max_missing allows), or None."""
    missing, allowed = health["rows"] - health["evaluated"], allowed_missing(max_missing, health["rows"])
    if missing <= allowed:
        return None
    keys = ", ".join(health["skipped_keys"][:5]) + (" ..." if len(health["skipped_keys"]) > 5 else "")
    return (f"{url}: evaluated {health['evaluated']} of {health['rows']} samples ({missing} missing; skipped: "
            f"{keys or 'none'})")


def run(cfg: Config, accelerator=None, out_dir: str | Path | None = None) -> dict:
    """Evaluate the configured protocol; write results.json / results.md (main process); return the results."""
    accelerator = accelerator or make_accelerator(cfg)
    zero_shot = cfg.eval.zero_shot
    weights = None
    if not zero_shot:
        if accelerator.is_main_process:
            weights = resolve_weights(cfg)  # may write the average once
        accelerator.wait_for_everyone()
        weights = resolve_weights(cfg)
    model = build_eval_model(cfg, weights).to(accelerator.device).eval()
    log.info(f"evaluating {'the zero-shot CLIP ' + cfg.model.clip if zero_shot else weights}")
    tic = time.time()
    paths = split_paths(cfg.data)["eval"]
    per_dataset, health = {}, {}
    for ds, splits in paths.items():
        per_dataset[ds], health[ds] = {}, {}
        for name, url in splits.items():
            if name == "full" and not split_exists(url):
                continue
            result = evaluate_split(model, url, cfg, accelerator, zero_shot, ds)
            health[ds][name] = result.pop("data")
            per_dataset[ds][name] = result
    problems = [p for ds, splits in paths.items() for name, h in health[ds].items()
                if (p := coverage_problem(splits[name], h, cfg.eval.max_missing))]
    if problems:  # every split is scored first, so one message names them all
        raise EvaluationError(f"{'; '.join(problems)}; eval.max_missing={cfg.eval.max_missing} does not allow "
                              f"that: repair the shards, or set eval.max_missing (a count, or a fraction < 1)")
    if cfg.data.protocol == "base2novel":
        (ds, s), = per_dataset.items()
        results = base2novel_results(ds, s["base"], s["novel"])
    else:
        results = cross_results(per_dataset)
    results["weights"] = "zero-shot" if zero_shot else str(weights)
    results["model"] = cfg.model.clip
    results["num_views"] = cfg.data.num_views
    results["eval_seconds"] = round(time.time() - tic, 1)
    results["data"] = health      # per split: rows, read, skipped (with keys), evaluated
    train_data = Path(cfg.output_dir) / "train_data.json"
    if not zero_shot and train_data.exists():
        try:
            results["data"]["train"] = json.loads(train_data.read_text(encoding="utf-8"))
        except ValueError as e:  # bookkeeping of the training's data health only: the scores stand without it
            log.warning(f"{train_data}: not readable JSON ({e}); results.json leaves out the training data health")
    if accelerator.is_main_process:
        out = Path(out_dir) if out_dir else Path(cfg.output_dir) / ("zero_shot" if zero_shot else "")
        write_results(results, out)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Evaluate FROSTER (or the zero-shot CLIP baseline).")
    ap.add_argument("--config", required=True, help="the training YAML config, or a run folder (its config.yaml)")
    ap.add_argument("--zero-shot", action="store_true", help="the frozen original CLIP, no temporal attention")
    ap.add_argument("--weights", default=None, help="student weights file (default: eval.weights of the config)")
    ap.add_argument("--out", default=None, help="folder for results.json/results.md (default: output_dir)")
    ap.add_argument("--allow-partial", action="store_true", help="evaluate a run whose training has not finished")
    add_logging_flags(ap)
    ap.add_argument("overrides", nargs="*", help="key.sub=value")
    a = ap.parse_args(argv)
    setup_logging(a.quiet, a.verbose)
    if launched():
        die_with_parent()
    if a.out:
        from model.inputs import check_output_folder
        check_output_folder(a.out, "--out")  # before the evaluation, not after it
    if Path(a.config).is_dir():  # a run folder evaluates the weights it trained, where it is now
        a.config, a.overrides = Path(a.config) / "config.yaml", [f"output_dir={a.config}", *a.overrides]
    cfg = load_config(a.config, a.overrides)
    cfg.eval.zero_shot = cfg.eval.zero_shot or a.zero_shot
    cfg.eval.allow_partial = cfg.eval.allow_partial or a.allow_partial
    if a.weights:
        cfg.eval.weights = a.weights
    # the folder this evaluation writes to (an average under output_dir/checkpoints, or the results) is ours alone
    own = a.out if a.out and (cfg.eval.zero_shot or cfg.eval.weights not in ("average", "last")) else cfg.output_dir
    with output_lock(own) if is_main_rank() else nullcontext():
        accelerator = make_accelerator(cfg)
        results = run(cfg, accelerator, a.out)
        if accelerator.is_main_process:
            print(markdown_table(results), end="")


if __name__ == "__main__":
    sys.exit(guarded(main))
