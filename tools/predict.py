#!/usr/bin/env python
"""Open-vocabulary action recognition on any video: which of your labels happens in it?

    python tools/predict.py clips/ "more/*.mp4" s3://bucket/videos/ --labels "juggling balls, riding a bike"
    python tools/predict.py VIDEO... --labels-file labels.txt --weights runs/k400 --json out.json
    python tools/predict.py VIDEO... --classes shards/classes.parquet --weights /models/froster_b2n_k400.pth

Weights (--weights): a frostline run's output_dir (its averaged weights, or its newest epoch before the average
exists), any file model.weights reads (OpenAI's ViT-B-16.pt, a FROSTER,
Open-VCLIP or ViFi-CLIP checkpoint, an open_clip state dict, safetensors), or an open_clip tag; default: plain
CLIP ViT-B-16 'openai' (offline and not cached: an error that asks for --weights). Sampling and prompts are
evaluation's; this is a command line over model.inference.Predictor (docs/predict.md). Each video gets its top-k labels
with probabilities, as a table and, with --json, as JSON. An unreadable video is reported by name and the rest go
on; the exit status is the number of videos that failed (at most 100). A name that matches nothing, a folder
without videos, a URL other than s3:// or a bad argument stops the command before the model loads (one line,
exit status 2; model/inputs.py).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in model/train.py: spinning OpenMP threads starve decoders
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.inputs import (InputError, at_least, check_output_file, positive_int, read_text_lines,  # noqa: E402
                          video_sources)
from shards.cli import add_alias, setup_logging, tool_parser  # noqa: E402


def read_labels(a) -> list[str]:
    if a.labels is not None:
        labels = [s.strip() for s in a.labels.split(",")]
    elif a.labels_file is not None:
        labels = [s.strip() for s in read_text_lines(a.labels_file)]
    else:
        from shards.manifest import read_table
        from shards.storage import Store
        parent, name = os.path.split(a.classes) if "://" not in a.classes else a.classes.rsplit("/", 1)
        table = read_table(Store(parent or "."), name)
        if not {"label", "class_name"} <= set(table.column_names):
            raise InputError(f"{a.classes}: a classes file needs the columns label and class_name, has "
                             f"{', '.join(table.column_names)}")
        table = table.sort_by("label")
        texts = table.column("prompt").to_pylist() if "prompt" in table.column_names else [None] * len(table)
        labels = [p or c for p, c in zip(texts, table.column("class_name").to_pylist())]
    labels = [s for s in labels if s]
    where = a.labels_file or a.classes or "--labels"
    if len(labels) < 2:  # the probabilities are a softmax over the labels: one label always gets 100 %
        raise InputError(f"{where}: {len(labels)} label(s); give at least two (probabilities are over the labels)")
    if len(set(labels)) != len(labels):
        raise InputError(f"{where}: labels repeat: {sorted({s for s in labels if labels.count(s) > 1})}")
    return labels


def main(argv: list[str] | None = None) -> int:
    ap = tool_parser(__doc__)
    ap.add_argument("videos", nargs="+", help="video files, globs, folders or s3:// URLs")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", help='comma-separated free-text labels: "juggling balls, riding a bike"')
    src.add_argument("--labels-file", help="a text file with one label per line")
    src.add_argument("--classes", help="a classes.parquet (label, class_name[, prompt]) of make_shards/make_splits")
    ap.add_argument("--weights", default=None, help="run output_dir, weights file or open_clip tag (default: openai)")
    ap.add_argument("--model", dest="clip", metavar="NAME", default=None, help="open_clip model name (default: from the weights; ViT-B-16 for a tag)")
    ap.add_argument("--base", default=None, help="weights for tensors a file lacks (ViFi-CLIP's token table)")
    ap.add_argument("--top-k", type=positive_int, default=5)
    ap.add_argument("--views", type=at_least(1, 1024), default=None, help="temporal views (default: evaluation's, 3)")
    ap.add_argument("--batch-size", type=positive_int, default=4, help="videos per forward pass")
    ap.add_argument("--json", default=None, help="also write the predictions as JSON to this file")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--no-progress", action="store_true")
    add_alias(ap, "--clip", "--model")
    a = ap.parse_args(argv)
    setup_logging(a.quiet, a.verbose)
    for noisy in ("root", "open_clip") if not a.verbose else ():  # open_clip logs through the root logger
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from tqdm import tqdm
    from model.inference import Predictor, ToyWeightsWarning
    import torch
    if a.device == "gpu" and not torch.cuda.is_available():
        print("error: --device gpu but no CUDA device is visible", file=sys.stderr)
        return 2
    videos = video_sources(a.videos)  # before the model loads: a typo or an http:// URL fails at once
    if a.json:
        check_output_file(a.json, "--json")
    try:
        labels = read_labels(a)
        with warnings.catch_warnings():   # printed below, after the model line
            warnings.simplefilter("ignore", ToyWeightsWarning)
            predictor = Predictor.load(a.weights, clip=a.clip, base=a.base,
                                       device="cuda" if a.device == "gpu" else "cpu")
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.views:
        predictor.sampling.views = a.views
    print(f"model: {predictor.description}", file=sys.stderr)
    for warning in predictor.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    results, failed = [], []
    bar = tqdm(total=len(videos), unit="video", disable=a.no_progress, file=sys.stderr, dynamic_ncols=True)
    for preds, errors in predictor.predict_batches(videos, labels, a.top_k, a.batch_size):
        failed.extend(errors)
        results.extend({"video": p.video, "top_k": [{"label": l, "probability": q} for l, q in p.top_k]}
                       for p in preds)
        bar.update(len(preds) + len(errors))
    bar.close()
    for r in results:
        print(r["video"])
        for rank, t in enumerate(r["top_k"], 1):
            print(f"  {rank}. {t['probability'] * 100:6.2f}%  {t['label']}")
    for f in failed:
        print(f"FAILED {f['video']}: {f['error']}", file=sys.stderr)
    print(f"{len(results)} video(s) classified, {len(failed)} failed", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps({"model": predictor.description, "warnings": predictor.warnings,
                                            "labels": labels, "predictions": results, "failed": failed},
                                           indent=2) + "\n")
    return min(len(failed), 100)


if __name__ == "__main__":
    from shards.cli import run
    sys.exit(run(main))
