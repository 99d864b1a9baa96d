"""tools/bench_fidelity.py end to end on the reduced setting (--quick): pre-training, the world dataset through
make_shards/make_splits, zero-shot / plain fine-tuning / FROSTER and the ablations (α, λ, visual-/text-only
distillation) through model/train.py, the tables and the last line."""
import json
import re

import pytest
from tool_module import run_quick


@pytest.mark.slow
def test_bench_fidelity_quick_prints_the_tables_and_the_gain(tmp_path):
    out = tmp_path / "fid"
    text = run_quick("bench_fidelity", out)
    assert "| method | runs | base top-1 | novel top-1 | HM |" in text
    for row in ("| zero-shot | 1 |", "| fine-tuned (λ=0) | 1 |", "| FROSTER | 1 |", "| FROSTER α=1 | 1 |",
                "| FROSTER λ=8 | 1 |", "| FROSTER visual-only distillation | 1 |",
                "| FROSTER text-only distillation | 1 |"):
        assert row in text, row
    assert re.search(r"class similarity .* mean max cosine -?\d\.\d{3}", text)
    last = text.strip().splitlines()[-1]
    m = re.fullmatch(r"froster_hm_gain: (-?\d+\.\d\d)", last)
    assert m, last

    # the gain is FROSTER's HM minus plain fine-tuning's, from the runs' own results.json
    def hm(name):
        res = json.loads((out / "runs" / name / "seed0_set1" / "results.json").read_text())
        b, n = res["base_top1"], res["novel_top1"]
        return 0.0 if b + n == 0 else 2 * b * n / (b + n)
    assert float(m[1]) == pytest.approx(hm("froster") - hm("finetune"), abs=0.006)
    rep = json.loads((out / "fidelity.json").read_text())
    assert rep["base_classes"][0] == "red square moving left" and "yellow circle growing" in rep["novel_classes"]
    novel_words = set(" ".join(rep["novel_classes"]).split())
    assert novel_words & set(" ".join(rep["base_classes"]).split()) == {"moving"}

    # plain fine-tuning really is lambda = 0 (loss == cross-entropy); FROSTER's loss adds the distillation
    def steps(name):
        return [json.loads(x) for x in (out / "runs" / name / "seed0_set1" / "metrics.jsonl").read_text().splitlines()]
    assert all(s["loss"] == s["ce"] for s in steps("finetune"))
    assert all(s["loss"] > s["ce"] for s in steps("froster")[1:])
    # the term ablations: each run's logged loss is CE + λ·(its one kept term), scaled to the loss itself
    for name, kept in (("distill_visual", "distill_visual"), ("distill_text", "distill_text")):
        for s in steps(name):
            assert s["loss"] == pytest.approx(s["ce"] + 2.0 * s[kept], rel=1e-4)
    assert (out / "splits" / "base2novel" / "ucf101" / "train_s1.parquet").exists()
    # a finished run keeps its averaged weights, not every epoch's (which filled 27 GB over the full experiment)
    for name in ("finetune", "froster"):
        ckpts = out / "runs" / name / "seed0_set1" / "checkpoints"
        assert list(ckpts.glob("swa_*.pt")) and not list(ckpts.glob("epoch_*"))

    # rerun: everything is reused, the same last line
    again = run_quick("bench_fidelity", out)
    assert again.strip().splitlines()[-1] == last
    assert "already there" in again and "training 2 epochs" not in again
