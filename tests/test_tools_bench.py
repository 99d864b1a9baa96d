"""The benchmark scripts run and print their tables (smoke runs on tiny settings; no timing is asserted)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_bench_shards_prints_one_row_per_setting():
    out = run_tool("tools/bench/shards.py", "--videos", "1", "--seconds", "4", "--size", "96x72",
                   "--intervals", "8,16", "--codecs", "vp9,h264", "--clips", "2")
    rows = [line.split() for line in out.splitlines() if line.startswith(("vp9", "h264"))]
    assert [(r[0], r[1]) for r in rows] == [("vp9", "8"), ("vp9", "16"), ("h264", "8"), ("h264", "16")]
    for r in rows:
        assert float(r[2]) > 0 and float(r[3]) > 0 and float(r[4]) > 0  # videos/s, KiB, PyAV ms
    assert all(float(r[5]) > 0 for r in rows if r[0] == "vp9")       # DALI-CPU ms on the cut stream


@pytest.mark.slow
def test_bench_train_prints_modes_and_speedup_last():
    out = run_tool("tools/bench/train.py", "--steps", "1", "--warmup", "0", "--batch-size", "1", "--num-frames", "2",
                   "--classes", "4", "--model", "frostline-tiny", "--modes", "reference,ours")
    lines = out.strip().splitlines()
    assert any(line.startswith("reference ") for line in lines) and any(line.startswith("ours ") for line in lines)
    assert lines[-1].startswith("speedup: ") and float(lines[-1].split()[1]) > 0
