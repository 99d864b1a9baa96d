"""tools/demo.py end to end (scaled down: 4 classes, 2 epochs), and re-running it resumes instead of redoing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--classes", "4", "--groups", "8", "--clips", "1", "--frames", "24", "--workers", "1",
         "train.epochs=2", "train.global_batch=4", "train.micro_batch=2", "data.num_frames=4", "data.frame_stride=2",
         "data.short_side_range=[64,72]", "train.progress=false"]


def demo(out: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "tools/demo.py", "--out", str(out), *SMALL], cwd=REPO, capture_output=True,
                       text=True, timeout=400, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "demo_out"
    r = demo(out)
    for stage in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert stage in r.stdout
    assert "| dataset | base top-1 | novel top-1 | HM |" in r.stdout
    res = json.loads((out / "results.json").read_text())
    need = {"protocol", "dataset", "base_top1", "novel_top1", "hm", "num_base_classes", "num_novel_classes"}
    assert need <= set(res) and res["protocol"] == "base2novel" and res["dataset"] == "ucf101"
    assert (res["num_base_classes"], res["num_novel_classes"]) == (2, 2)
    assert all(0 <= res[k] <= 100 for k in ("base_top1", "novel_top1", "hm"))
    assert res["weights"].endswith("swa_2_2.pt")
    assert (out / "results.md").read_text().startswith("| dataset |")
    assert (out / "shards" / "manifest.parquet").exists()
    assert (out / "splits" / "base2novel" / "ucf101" / "train_s1.parquet").exists()
    steps = (out / "run" / "metrics.jsonl").read_text().splitlines()

    # the same command again: nothing is regenerated or retrained, the evaluation gives the same numbers
    r2 = demo(out)
    assert "already finished" in r2.stderr
    assert (out / "run" / "metrics.jsonl").read_text().splitlines() == steps
    assert json.loads((out / "results.json").read_text())["base_top1"] == res["base_top1"]

    # a resume with other training settings is refused, naming them (the schedule would silently change)
    r3 = subprocess.run([sys.executable, "tools/demo.py", "--out", str(out), *SMALL, "train.epochs=3"], cwd=REPO,
                        capture_output=True, text=True, timeout=400, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r3.returncode != 0 and "train.epochs: 2 -> 3" in r3.stderr
