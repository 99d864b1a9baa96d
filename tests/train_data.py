"""A small learnable base-to-novel dataset for the training tests: generated UCF101-layout videos -> shards ->
base2novel splits (the path a user takes, through the real converter and split writer)."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from local_s3 import free_port

REPO = Path(__file__).resolve().parents[1]
# the environment of the tools the tests start: this checkout's code, no hub, no launch settings of the caller
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
ENV.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))

# The 2-process run of the DDP, FSDP and kill tests (conftest's ddp_run and fsdp_run): 12 training clips, global
# batch 4 = 2 processes x 2 clips, 3 optimiser steps per epoch, 6 in all; a resume point after every 2nd step
# (steps 2 and 4 are mid-epoch) besides the epoch ends; average from epoch 1.
TWO_PROCESS_RUN = {"epochs": 2, "average_from": 1, "keep_states": 2, "global_batch": 4, "micro_batch": 2,
                   "save_every_steps": 2}


def make_dataset(out: Path, *, num_classes: int, groups: int, clips: int, frames: int, workers: int,
                 seed: int = 0, described: bool = False) -> None:
    """Videos under OUT/raw, shards under OUT/shards, split files under OUT/splits (16 shots, one training set).
    Each class's prompt spells its attributes ("red circle moving left"), so class texts share words; `described`:
    in FROSTER's "Name: description" form ("red circle moving left: a red circle ...")."""
    from shards import splits
    from shards.generated import synthetic
    from shards.convert import convert_dataset

    out = Path(out)
    raw, store, split_dir = out / "raw", out / "shards", out / "splits"
    syn = synthetic.make_ucf101(str(raw), num_classes=num_classes, groups=groups, clips=clips, width=64, height=48,
                                num_frames=frames, quirks=False, learnable=True, seed=seed)
    convert_dataset("ucf101", str(raw), str(store), workers=workers, short_side=64, progress=False)
    words = {c: re.sub(r"(?<!^)(?=[A-Z])", " ", c).lower() for c in syn.classes}
    prompts = json.dumps({c: f"{w}: a {w.split(' moving')[0]} on a plain background" if described else w
                          for c, w in words.items()})
    (out / "class_names.json").write_text(prompts)
    m = splits.Manifest.load(str(store), "ucf101")
    plan = splits.base2novel(m, shots=16, seed=seed, num_train_sets=1, class_names=prompts,
                             class_names_path=str(out / "class_names.json"))
    splits.write_plan(plan, str(split_dir))


def write_tiny_config(path: Path, splits: Path, out: Path, *, eval_batch: int, train: dict) -> Path:
    """A training config (JSON, which is YAML) for frostline-tiny on CPU over the dataset's split files: 4 frames
    of 64², 3 test views, no mixed precision, a log record every step; `train` adds to or overrides the recipe."""
    t = {"warmup_epochs": 1, "lr": 1.0e-3, "min_lr": 1.0e-5, "global_batch": 4, "micro_batch": 2,
         "mixed_precision": "no", "log_every": 1, "progress": False, **train}
    path.write_text(json.dumps({
        "output_dir": str(out), "model": {"clip": "frostline-tiny", "pretrained": None},
        "data": {"splits": str(splits), "protocol": "base2novel", "dataset": "ucf101", "device": "cpu",
                 "num_frames": 4, "frame_stride": 2, "crop_size": 64, "short_side_range": [64, 72],
                 "num_views": 3, "num_threads": 1},
        "train": t, "eval": {"batch_size": eval_batch}}))
    return path


def two_process_launcher() -> list[str]:
    """`accelerate launch` of 2 CPU processes on this machine (run with ACCELERATE_USE_CPU=1, see
    launch_two_processes), on a free port."""
    return ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]


def launch_two_processes(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `args` (a script and its arguments) under two_process_launcher(), from the repository root."""
    return subprocess.run(two_process_launcher() + args, cwd=REPO, env={**ENV, "ACCELERATE_USE_CPU": "1"},
                          capture_output=True, text=True, timeout=timeout)
