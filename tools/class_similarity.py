#!/usr/bin/env python
"""How close are the evaluation classes to the training classes in CLIP's text space? (FROSTER, Fig. 1)

For each evaluation class: the highest cosine similarity between its CLIP text feature and the training classes'
features; the table reports the mean over the evaluation classes (and min / max). Base-to-novel compares the novel
classes with the base classes; cross-dataset compares each evaluation set (UCF101, HMDB51, K600 splits) with K400.
A class's text feature is evaluation's: the normalised mean over the 29 prompt templates (--bare: the class text
alone).

    python tools/class_similarity.py --splits splits --protocol base2novel --datasets ucf101 hmdb51 k400 ssv2
    python tools/class_similarity.py --splits splits --protocol cross --plot fig1.png
    python tools/class_similarity.py --train classes_a.parquet --eval classes_b.parquet --weights W

Weights (--weights): any that model.clip.load_clip reads; default: ViT-B-16 'openai'. --plot writes a bar chart
(needs matplotlib: pip install 'frostline[plot]').
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.inputs import check_output_file, positive_int  # noqa: E402
from shards.cli import add_alias, setup_logging, tool_parser  # noqa: E402


def class_texts_of(url: str) -> list[str]:
    """Class texts (descriptions where the classes file has them) of a split file or a classes.parquet."""
    from model import prompts
    from shards.manifest import read_table
    from shards.splits import read_split
    from shards.storage import Store
    if url.rsplit("/", 1)[-1].startswith("classes"):
        parent, name = url.rsplit("/", 1) if "/" in url else (".", url)
        table = read_table(Store(parent), name)
    else:
        _, table = read_split(url)
    if not {"label", "class_name"} <= set(table.column_names):
        from model.inputs import InputError
        raise InputError(f"{url}: classes need the columns label and class_name, it has {', '.join(table.column_names)}")
    table = table.sort_by("label")
    names = table.column("class_name").to_pylist()
    descs = table.column("prompt").to_pylist() if "prompt" in table.column_names else [None] * len(names)
    return [prompts.class_text(n, d) for n, d in zip(names, descs)]


def comparisons(splits: str, protocol: str, datasets: list[str], train_set: int) -> list[tuple[str, str, str, str]]:
    """(evaluation name, its file, training name, its file) for a protocol's split files."""
    root = splits.rstrip("/")
    if protocol == "base2novel":
        return [(f"{ds} novel", f"{root}/base2novel/{ds}/eval_novel.parquet", f"{ds} base",
                 f"{root}/base2novel/{ds}/train_s{train_set}.parquet") for ds in datasets]
    out = []
    for ds in datasets:
        for part in ("1", "2", "3", "full"):
            url = f"{root}/cross/{ds}/eval_{part}.parquet"
            if part != "full" or _exists(url):
                out.append((f"{ds} {'split ' + part if part != 'full' else 'full'}", url, "k400",
                            f"{root}/cross/k400/train.parquet"))
    return out


def _exists(url: str) -> bool:
    from shards import storage
    return storage.exists(url)


def text_features(model, texts: list[str], bare: bool):
    """[C, D] normalised: the 29-template ensemble (evaluation's class feature) or the bare text's feature."""
    import torch
    from model.clip import encode_text
    if bare:
        with torch.no_grad():
            return encode_text(model.student.clip, model.tokenizer(texts))
    model.set_classes(texts)
    return model.class_features()


def similarity(train, evals) -> dict:
    """Per evaluation class, the max cosine with any training class; mean/min/max over evaluation classes."""
    best = (evals @ train.T).max(dim=1).values
    return {"classes": len(best), "mean": float(best.mean()), "min": float(best.min()), "max": float(best.max())}


def main(argv: list[str] | None = None) -> int:
    ap = tool_parser(__doc__)
    ap.add_argument("--splits", help="make_splits output folder (or s3:// URL)")
    ap.add_argument("--protocol", choices=("base2novel", "cross"), default="base2novel")
    ap.add_argument("--datasets", nargs="+", default=None,
                    help="base2novel: the datasets (default ucf101 hmdb51 k400 ssv2); cross: the evaluation "
                         "datasets (default ucf101 hmdb51 k600)")
    ap.add_argument("--train-set", type=positive_int, default=1, help="base2novel training set whose classes are 'base'")
    ap.add_argument("--train", help="instead of --splits: the training classes (classes.parquet or split file)")
    ap.add_argument("--eval", nargs="+", help="instead of --splits: evaluation classes files")
    ap.add_argument("--weights", default=None, help="weights file or open_clip tag (default: openai)")
    ap.add_argument("--model", dest="clip", metavar="NAME", default=None,
                    help="open_clip model name (default: from the weights; ViT-B-16)")
    add_alias(ap, "--clip", "--model")
    ap.add_argument("--bare", action="store_true", help="the bare class text instead of the 29-prompt ensemble")
    ap.add_argument("--plot", default=None, help="write a bar chart PNG here (needs matplotlib)")
    a = ap.parse_args(argv)
    setup_logging(a.quiet, a.verbose)
    if bool(a.splits) == bool(a.train):
        ap.error("give either --splits or --train/--eval")
    if a.train and not a.eval:
        ap.error("--train needs --eval")
    if a.plot:
        check_output_file(a.plot, "--plot")

    from model.clip import is_weights_path
    from model.froster import Froster
    if a.splits:
        datasets = a.datasets or (["ucf101", "hmdb51", "k400", "ssv2"] if a.protocol == "base2novel"
                                  else ["ucf101", "hmdb51", "k600"])
        pairs = comparisons(a.splits, a.protocol, datasets, a.train_set)
    else:
        pairs = [(Path(e).stem, e, Path(a.train).stem, a.train) for e in a.eval]
    weights = a.weights or "openai"
    try:
        model = Froster.build(a.clip or (None if is_weights_path(weights) else "ViT-B-16"), weights, teacher=False)
        rows, cache = [], {}
        for name, url, train_name, train_url in pairs:
            if train_url not in cache:
                cache[train_url] = text_features(model, class_texts_of(train_url), a.bare)
            rows.append((name, train_name, similarity(cache[train_url], text_features(
                model, class_texts_of(url), a.bare))))
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"text features: {model.clip_info.describe()}; {'bare class text' if a.bare else '29-prompt ensemble'}")
    print("| evaluation classes | training classes | classes | mean max cosine | min | max |")
    print("|---|---|---:|---:|---:|---:|")
    for name, train_name, r in rows:
        print(f"| {name} | {train_name} | {r['classes']} | {r['mean']:.4f} | {r['min']:.4f} | {r['max']:.4f} |")
    if a.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("--plot skipped: matplotlib is not installed (pip install 'frostline[plot]')", file=sys.stderr)
            return 0
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows)), 3.5))
        ax.bar([n for n, _, _ in rows], [r["mean"] for _, _, r in rows], color="#4c72b0")
        ax.set_ylabel("mean max cosine similarity")
        ax.set_title("evaluation vs training classes (CLIP text)")
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    from shards.cli import run
    sys.exit(run(main))
