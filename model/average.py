"""Uniform weight averaging of epoch checkpoints (the reference's ``swa_2_22``: epochs 2..22 of a 22-epoch run).

The training recipe writes the student's weights of every epoch to ``checkpoints/epoch_{e:03d}/model.pt``; this module
averages a range of them one file at a time (memory: two state dicts), and writes ``checkpoints/swa_{a}_{b}.pt`` in the
same format, so ``model.clip.build_clip(checkpoint=...)`` and the evaluation load either.

    python model/average.py RUN_DIR [--from 2] [--to LAST] [--out FILE]
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python model/average.py` runs this file as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

log = logging.getLogger("model.average")

EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


class WeightsError(ValueError):
    """A weights file that cannot be read or averaged; the message names the file."""


def epoch_weights(checkpoint_dir: str | Path) -> dict[int, Path]:
    """{epoch (1-based): weights file} for every finished epoch under ``checkpoint_dir``."""
    found = {}
    root = Path(checkpoint_dir)
    if root.is_dir():
        for d in root.iterdir():
            m = EPOCH_DIR.match(d.name)
            if m and (d / "model.pt").is_file():
                found[int(m.group(1))] = d / "model.pt"
    return dict(sorted(found.items()))


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, wrapper) of a weights file: a bare state dict, or model.clip.export_clip's
    {"state_dict": ..., "model_name": ...} (the wrapper's other entries are returned to be written back)."""
    from model.weights import UNREADABLE
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE:
        raise
    except Exception as e:  # noqa: BLE001 - torch reports a damaged file in many classes (zip, pickle, EOF, ...)
        raise WeightsError(f"{path}: not a readable weights file ({' '.join(str(e).split())[:200]})") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"], {k: v for k, v in obj.items() if k != "state_dict"}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return obj, {}


def average_state_dicts(paths: list[str | Path]) -> dict[str, torch.Tensor]:
    """Uniform mean of floating-point tensors (accumulated in float64); other tensors must agree across files."""
    if not paths:
        raise ValueError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}
    for i, p in enumerate(paths):
        sd, _ = load_weights(p)
        if i == 0:
            first = sd
            total = {k: v.double().clone() for k, v in sd.items() if v.is_floating_point()}
            continue
        if sd.keys() != first.keys():
            missing = sorted(set(first) ^ set(sd))[:5]
            raise WeightsError(f"{p}: keys differ from {paths[0]} (e.g. {missing})")
        for k, v in sd.items():
            if v.shape != first[k].shape:
                raise WeightsError(f"{p}: {k} has shape {tuple(v.shape)}, {paths[0]} has {tuple(first[k].shape)}")
            if k in total:
                total[k] += v.double()
            elif not torch.equal(v, first[k]):
                raise WeightsError(f"{p}: non-float tensor {k} differs from {paths[0]}; cannot average")
    n = len(paths)
    return {k: (total[k] / n).to(v.dtype) if k in total else v for k, v in first.items()}


def average_checkpoints(checkpoint_dir: str | Path, start: int = 2, end: int | None = None,
                        out: str | Path | None = None) -> Path:
    """Average epochs ``start..end`` (inclusive; ``end`` defaults to the last one) and write ``swa_{start}_{end}.pt``."""
    weights = epoch_weights(checkpoint_dir)
    if not weights:
        raise FileNotFoundError(f"{checkpoint_dir}: no epoch_*/model.pt checkpoints")
    end = max(weights) if end is None else end
    missing = [e for e in range(start, end + 1) if e not in weights]
    if start > end or missing:
        raise FileNotFoundError(
            f"{checkpoint_dir}: cannot average epochs {start}..{end}; missing {missing or 'all'} "
            f"(have {sorted(weights)})")
    avg = average_state_dicts([weights[e] for e in range(start, end + 1)])
    _, wrapper = load_weights(weights[end])
    out = Path(out) if out else Path(checkpoint_dir) / f"swa_{start}_{end}.pt"
    tmp = out.with_name(out.name + ".tmp")
    from model.checkpoint import save_file
    save_file({"state_dict": avg, **wrapper} if wrapper else avg, tmp)
    os.replace(tmp, out)  # atomic: a crash never leaves a half-written average behind
    return out


def main(argv: list[str] | None = None) -> None:
    from model.inputs import check_output_file, positive_int
    from shards.cli import add_logging_flags, setup_logging
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="training output_dir (or its checkpoints/ folder)")
    ap.add_argument("--from", dest="start", type=positive_int, default=2, help="first epoch to average (1-based)")
    ap.add_argument("--to", dest="end", type=positive_int, default=None, help="last epoch (default: the last one)")
    ap.add_argument("--out", default=None, help="output file (default: checkpoints/swa_FROM_TO.pt)")
    add_logging_flags(ap)
    a = ap.parse_args(argv)
    setup_logging(a.quiet, a.verbose)
    if a.out:
        check_output_file(a.out, "--out")
    ckpt = Path(a.run_dir)
    if (ckpt / "checkpoints").is_dir():
        ckpt = ckpt / "checkpoints"
    path = average_checkpoints(ckpt, a.start, a.end, a.out)
    log.info(f"wrote {path}")


if __name__ == "__main__":
    from shards.cli import run
    sys.exit(run(main))
