"""The cross-dataset protocol end to end: train on a tiny K400 (cross/k400/train.parquet), evaluate on UCF101's
three test splits and the full set; results.json holds each split, mean +- std and full, every clip once."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def build(root: Path) -> Path:
    from shards import splits
    from shards.generated import synthetic
    from shards.convert import convert_dataset
    synthetic.make_kinetics(str(root / "k400_raw"), num_classes=3, per_class=3, test=0, quirks=False)
    synthetic.make_ucf101(str(root / "ucf_raw"), num_classes=3, groups=4, clips=1, num_frames=24, quirks=False,
                          learnable=True)
    convert_dataset("k400", str(root / "k400_raw"), str(root / "k400"), workers=1, short_side=64, progress=False)
    convert_dataset("ucf101", str(root / "ucf_raw"), str(root / "ucf"), workers=1, short_side=64, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k400 = splits.Manifest.load(str(root / "k400"), "k400")
        ucf = splits.Manifest.load(str(root / "ucf"), "ucf101")
        for plan in (splits.cross_train(k400), splits.cross(k400, ucf)):
            splits.write_plan(plan, str(root / "splits"))
    return root / "splits"


@pytest.mark.slow
def test_cross_dataset_train_and_evaluate(tmp_path):
    split_root = build(tmp_path)
    out = tmp_path / "run"
    cfg = tmp_path / "cross.yaml"
    cfg.write_text(json.dumps({
        "output_dir": str(out), "model": {"clip": "frostline-tiny", "pretrained": None},
        "data": {"splits": str(split_root), "protocol": "cross", "dataset": "k400", "eval_datasets": ["ucf101"],
                 "device": "cpu", "num_frames": 4, "frame_stride": 2, "crop_size": 64, "short_side_range": [64, 72],
                 "num_threads": 1},
        "train": {"epochs": 2, "warmup_epochs": 1, "global_batch": 4, "micro_batch": 2, "mixed_precision": "bf16",
                  "progress": False, "average_from": 2},
        "eval": {"batch_size": 6}}))
    r = subprocess.run([sys.executable, "model/train.py", "--config", str(cfg)], cwd=REPO, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"] == "cross"
    ucf = res["datasets"]["ucf101"]
    assert set(ucf["splits"]) == {"1", "2", "3"}
    # official UCF split k tests on groups g with (g-1) % 4 == k-1: one group of each of the 3 classes
    assert all(s["num_samples"] == 3 and s["num_classes"] == 3 for s in ucf["splits"].values())
    assert ucf["full"]["num_samples"] == 12
    tops = [s["top1"] for s in ucf["splits"].values()]
    assert ucf["top1_mean"] == pytest.approx(sum(tops) / 3)
    assert ucf["top1_std"] == pytest.approx((sum((t - sum(tops) / 3) ** 2 for t in tops) / 3) ** 0.5)
    assert all(s["top5"] == 100.0 for s in ucf["splits"].values())   # 3 classes: top-5 always hits
    table = (out / "results.md").read_text()
    assert "| ucf101 | mean ± std |" in table and "| ucf101 | full |" in table
