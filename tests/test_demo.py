"""tools/demo.py end to end (scaled down: short pre-training, 2 epochs), and re-running it resumes instead of
redoing; a rerun with other training settings is refused."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
demo_tool = load_tool("demo")
SMALL = ["--pretrain-steps", "30", "--pretrain-images", "300", "--groups", "4", "--clips", "1", "--shots", "2",
         "--workers", "1", "train.epochs=2"]


def demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/demo.py", "--out", str(out), *SMALL, *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=500, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "demo_out"
    r = demo(out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    for stage in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert stage in r.stdout
    assert "| method | runs | base top-1 | novel top-1 | HM |" in r.stdout
    for row in ("| zero-shot | 1 |", "| fine-tuned (λ=0) | 1 |", "| FROSTER | 1 |"):
        assert row in r.stdout
    res = json.loads((out / "results.json").read_text())
    need = {"protocol", "dataset", "base_top1", "novel_top1", "hm", "num_base_classes", "num_novel_classes"}
    assert need <= set(res) and res["protocol"] == "base2novel" and res["dataset"] == "ucf101"
    assert (res["num_base_classes"], res["num_novel_classes"]) == (8, 8)
    assert set(res["methods"]) == {"zero-shot", "fine-tuned (λ=0)", "FROSTER"}
    assert res["methods"]["zero-shot"]["weights"] == "zero-shot"
    assert res["weights"].endswith("swa_2_2.pt") and "froster" in res["weights"]
    assert all(0 <= m[k] <= 100 for m in res["methods"].values() for k in ("base_top1", "novel_top1", "hm"))
    assert (out / "results.md").read_text().startswith("| method |")
    assert (out / "clip" / "seed0" / "world_clip.pt").exists() and (out / "shards" / "manifest.parquet").exists()
    # the sentence says what the rows mean, with the rows' own numbers
    sentence = next(x for x in r.stdout.splitlines() if x.startswith("Zero-shot CLIP cannot tell"))
    assert f"({res['methods']['zero-shot']['base_top1']:.0f} % base)" in sentence
    # the runs train with the sweep's choice unless the command line says otherwise (here: train.epochs=2)
    cfg = (out / "runs" / "froster" / "seed0_set1" / "config.yaml").read_text()
    assert f"lr: {demo_tool.CHOSEN['froster'][0].split('=')[1]}" in cfg and "epochs: 2" in cfg
    steps = (out / "runs" / "froster" / "seed0_set1" / "metrics.jsonl").read_text().splitlines()
    # after the demo's clean-up (no epoch folders) the run folder is still its averaged weights, not world_clip.pt
    from model.inference import run_weights
    assert not list((out / "runs" / "froster" / "seed0_set1" / "checkpoints").glob("epoch_*"))
    assert run_weights(out / "runs" / "froster" / "seed0_set1")[1].name == "swa_2_2.pt"

    # the same command again: the pre-trained CLIP, the dataset and the runs are reused, same numbers
    r2 = demo(out)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "already there" in r2.stdout
    assert (out / "runs" / "froster" / "seed0_set1" / "metrics.jsonl").read_text().splitlines() == steps
    assert json.loads((out / "results.json").read_text())["methods"] == res["methods"]

    # other training settings on the same folder are refused, naming them
    r3 = demo(out, "train.epochs=3")
    assert r3.returncode != 0 and "train.epochs=3" in r3.stderr
