"""tools/bench_fidelity.py end to end on the reduced setting (--quick, with alpha and lambda given on the command
line): pre-training, the world through make_shards/make_splits, the sweep on base validation clips, zero-shot /
plain fine-tuning / FROSTER, the controls and the ablations through model/train.py, the criteria lines and the
last line; then the statistics on numbers whose answer is known.

Slow (about 3 minutes on the project's 2-core machine at load average 10, the reused rerun included): it is the
whole experiment, 15 runs of model/train.py, at its smallest."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]


def runs(out: Path, name: str) -> Path:
    return out / "runs" / name / "pretrain0_world0" / "seed0_set1"


def quick(out: Path) -> str:
    r = subprocess.run([sys.executable, "tools/bench_fidelity.py", "--out", str(out), "--quick", "model.alpha=0.2",
                        "model.distill_weight=3", "--lrs", "0.0005"], cwd=REPO, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r.stdout


@pytest.mark.slow
def test_bench_fidelity_quick_checks_the_criteria_on_its_own_runs(tmp_path):
    out = tmp_path / "fid"
    text = quick(out)
    lines = text.strip().splitlines()
    crit = [x for x in lines if re.match(r"(PASS|FAIL): [1-4] ", x)]
    assert [c.split(": ", 1)[1][0] for c in crit] == ["1", "2", "3", "4"], crit
    last = re.fullmatch(r"froster_hm_gain_vs_best: (-?\d+\.\d\d)", lines[-1])
    assert last, lines[-1]
    for row in ("| zero-shot | 1 |", "| fine-tuned (λ=0) | 1 |", "| FROSTER | 1 |", "| FROSTER α=1 | 1 |",
                "| FROSTER λ=8 | 1 |", "| FROSTER lr=0.0005 | 1 |",
                "| FROSTER visual-only distillation | 1 |",
                "| fine-tuned (λ=0), single-frame clips | 1 |", "| zero-shot, static-only class names | 1 |"):
        assert row in text, row

    # the last line and the criteria come from the runs' own results.json (HM of the means; one run each here)
    def res(name, zero_shot=False):
        return json.loads((runs(out, name) / ("zero_shot" if zero_shot else "") / "results.json").read_text())

    def hm(r):
        b, n = r["base_top1"], r["novel_top1"]
        return 0.0 if b + n == 0 else 2 * b * n / (b + n)
    zs, ft, fr = res("zero_shot", True), res("finetune"), res("froster")
    assert float(last[1]) == pytest.approx(hm(fr) - max(hm(zs), hm(ft)), abs=0.006)
    ok1 = zs["base_top1"] <= 60
    assert crit[0].startswith("PASS" if ok1 else "FAIL")
    assert crit[1].startswith("PASS" if ft["base_top1"] >= zs["base_top1"] + 25 else "FAIL")
    # one run has no interval: criterion 4 cannot pass
    assert crit[3].startswith("FAIL") and "nan" in crit[3]

    # the CLIP was pre-trained on frames without afterimages (no motion shown or named); the world's clips have them
    clip_info = json.loads((out / "clip" / "seed0" / "world_clip.json").read_text())
    assert clip_info["settings"]["afterimages"] is False, clip_info["settings"]
    assert json.loads((out / "world0" / "raw" / ".complete").read_text())["settings"]["afterimage"] is True

    # the sweep trained on the training sets and scored base validation clips (held-out group 2), never test clips
    rep = json.loads((out / "fidelity.json").read_text())
    for label, points in rep["sweep"].items():
        assert len(points) == 2
        best = max(p["val_base_top1"] for p in points)
        chosen = rep["chosen"][label]
        assert chosen["val_base_top1"] == best
        assert chosen == min((p for p in points if p["val_base_top1"] == best), key=lambda p: (p["epochs"], p["lr"]))
    lr = rep["sweep"]["FROSTER"][0]["lr"]
    sweep_cfg = yaml.safe_load((runs(out, f"sweep_froster_lr{lr:g}_ep2") / "config.yaml").read_text())
    assert sweep_cfg["data"]["splits"].endswith("world0/splits_val")
    val = pq.read_table(out / "world0" / "splits_val" / "base2novel" / "ucf101" / "eval_base.parquet")
    assert all("_g02_" in k for k in val.column("key").to_pylist())
    # the main runs train with the chosen setting
    fr_cfg = yaml.safe_load((runs(out, "froster") / "config.yaml").read_text())
    assert (fr_cfg["train"]["lr"], fr_cfg["train"]["epochs"]) == (rep["chosen"]["FROSTER"]["lr"],
                                                                  rep["chosen"]["FROSTER"]["epochs"])

    # alpha and lambda come from the command line; plain fine-tuning stays lambda = 0; each ablation changes one
    ft_cfg = yaml.safe_load((runs(out, "finetune") / "config.yaml").read_text())
    assert (fr_cfg["model"]["alpha"], fr_cfg["model"]["distill_weight"]) == (0.2, 3.0)
    assert ft_cfg["model"]["distill_weight"] == 0
    for name, alpha, lam, lr in (("alpha1", 1.0, 3.0, rep["chosen"]["FROSTER"]["lr"]),
                                 ("lambda8", 0.2, 8.0, rep["chosen"]["FROSTER"]["lr"]), ("lr0.0005", 0.2, 3.0, 5e-4)):
        cfg = yaml.safe_load((runs(out, name) / "config.yaml").read_text())
        assert (cfg["model"]["alpha"], cfg["model"]["distill_weight"], cfg["train"]["lr"]) == (alpha, lam, lr)

    def steps(name):
        return [json.loads(x) for x in (runs(out, name) / "metrics.jsonl").read_text().splitlines()]
    assert all(s["loss"] == s["ce"] for s in steps("finetune"))
    assert all(s["loss"] == pytest.approx(s["ce"] + 3.0 * (s["distill_visual"] + s["distill_text"]), rel=1e-4)
               for s in steps("froster"))
    # ablation rows are their own runs: the loss of the λ=8 run is not the FROSTER run's
    assert [s["loss"] for s in steps("lambda8")] != [s["loss"] for s in steps("froster")]
    assert all(s["loss"] == pytest.approx(s["ce"] + 3.0 * s["distill_visual"], rel=1e-4)
               for s in steps("distill_visual"))

    # controls: the fine-tuned weights on single-frame clips; the zero-shot CLIP with static-only class names
    single = res("control_single_frame")
    assert single["weights"] == ft["weights"]
    assert "data.num_frames=1" in json.loads((runs(out, "control_single_frame") / "bench_args.json").read_text())
    static = pq.read_table(out / "world0" / "splits_static" / "base2novel" / "ucf101" / "classes_base.parquet")
    assert set(static.column("prompt").to_pylist()) == {"square"}
    assert res("control_static_prompts", True)["weights"] == "zero-shot"

    # rerun: everything is reused, the same last line
    again = quick(out)
    assert again.strip().splitlines()[-1] == lines[-1]
    assert "already there" in again


def test_paired_statistics_and_the_criteria_on_known_numbers():
    bf = load_tool("bench_fidelity")
    d = bf.paired([3.0, 5.0, 7.0], [1.0, 1.0, 1.0])            # differences 2, 4, 6
    assert d["mean"] == pytest.approx(4.0) and d["sd"] == pytest.approx(2.0)   # sample std (n - 1)
    assert d["se"] == pytest.approx(2.0 / 3 ** 0.5)
    assert d["ci95"][0] == pytest.approx(4.0 - 4.302653 * 2.0 / 3 ** 0.5, rel=1e-5)   # t(2) = 4.3027
    assert (d["better"], d["worse"]) == (3, 0)
    runs_ = [{"base_top1": 80.0, "novel_top1": 20.0}, {"base_top1": 60.0, "novel_top1": 40.0}]
    s = bf.summarise(runs_)
    assert s["hm"] == pytest.approx(2 * 70 * 30 / 100)           # HM of the means, not the mean of the HMs
    assert s["base_top1"][1] == pytest.approx(14.142136, rel=1e-6)
    zs = bf.summarise([{"base_top1": 12.5, "novel_top1": 90.0}] * 2)
    ft = bf.summarise([{"base_top1": 95.0, "novel_top1": 50.0}] * 2)
    fr = bf.summarise([{"base_top1": 94.0, "novel_top1": 70.0}] * 2)
    crit = bf.criteria(zs, ft, fr, {"ci95": (1.5, 9.0)})
    assert [ok for _, ok, _ in crit] == [True, True, True, True]
    assert not bf.criteria(zs, ft, fr, {"ci95": (-0.5, 9.0)})[3][1]
    assert bf.choose([{"lr": 3e-3, "epochs": 5, "val_base_top1": 90.0}, {"lr": 1e-3, "epochs": 10,
                      "val_base_top1": 90.0}, {"lr": 1e-3, "epochs": 5, "val_base_top1": 80.0}]) == \
        {"lr": 3e-3, "epochs": 5, "val_base_top1": 90.0}
