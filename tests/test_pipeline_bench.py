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
    r = subprocess.run([sys.executable, str(REPO / "tools" / "bench_loader.py"), "--split", out, "--device", "cpu",
                        "--batches", "2", "--warmup", "1", "--batch-size", "64", "--num-frames", "2",
                        "--frame-stride", "2", "--crop-size", "32", "--workers", "1"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert any(line.startswith("dali pipeline") for line in lines)
    assert any("fewer than one training batch of 64" in line for line in lines)
    assert lines[-1] == "ratio: n/a"
