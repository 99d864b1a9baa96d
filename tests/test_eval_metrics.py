"""Evaluation metrics on hand-made logits: top-k, HM, mean +- std, view sums, each sample once across ranks."""
import json

import pytest
import torch

from model.evaluate import (ViewSums, base2novel_results, cross_results, harmonic_mean, markdown_table, mean_std,
                            score, topk_accuracy, write_results)


def test_topk_accuracy_by_hand():
    logits = torch.tensor([[0.9, 0.05, 0.03, 0.02],   # label 0: top-1 hit
                           [0.1, 0.2, 0.3, 0.4],      # label 0: ranked last -> miss at 1 and at 3
                           [0.3, 0.4, 0.2, 0.1],      # label 0: ranked 2nd -> top-2/3 hit
                           [0.1, 0.1, 0.7, 0.1]])     # label 2: hit
    labels = torch.tensor([0, 0, 0, 2])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 3, 5))
    assert acc[1] == pytest.approx(50.0)
    assert acc[2] == pytest.approx(75.0)
    assert acc[3] == pytest.approx(75.0)
    assert acc[5] == pytest.approx(100.0)   # k clipped to the 4 classes


def test_topk_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected logits"):
        topk_accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


def test_harmonic_mean_and_mean_std():
    assert harmonic_mean(80.0, 40.0) == pytest.approx(2 * 80 * 40 / 120)
    assert harmonic_mean(0.0, 0.0) == 0.0
    m, s = mean_std([70.0, 72.0, 74.0])
    assert m == pytest.approx(72.0)
    assert s == pytest.approx((8 / 3) ** 0.5)   # population std


def test_views_are_summed_not_voted():
    # Two views of clip "a" (label 1): view 0 favours class 0 slightly, view 1 favours class 1 strongly.
    # Summed logits pick class 1 even though the views disagree.
    sums = ViewSums()
    sums.add(["a", "a"], torch.tensor([[2.0, 1.5], [0.0, 3.0]]), torch.tensor([1, 1]))
    sums.add(["b"], torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    keys, logits, labels = sums.stacked()
    assert keys == ["a", "b"]
    assert torch.equal(logits, torch.tensor([[2.0, 4.5], [1.0, 0.0]]))
    assert sums.views == {"a": 2, "b": 1}
    r = score(sums, num_classes=2, expected_views=2)
    assert r["top1"] == 100.0 and r["num_samples"] == 2 and r["samples_with_other_view_count"] == 1


def test_padding_rows_are_ignored_and_ranks_count_each_sample_once():
    # Rank 0 sees views 0,1 of "a" and a padding copy of "b"; rank 1 sees view 2 of "a" and all of "b".
    r0, r1 = ViewSums(), ViewSums()
    r0.add(["a", "a", "b"], torch.tensor([[1.0, 0.0], [1.0, 0.0], [9.0, 0.0]]), torch.tensor([0, 0, 1]),
           valid=torch.tensor([True, True, False]))
    r1.add(["a", "b", "b", "b"], torch.tensor([[0.0, 1.5], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]),
           torch.tensor([0, 1, 1, 1]))
    merged = r0.merge(r1)
    keys, logits, labels = merged.stacked()
    assert keys == ["a", "b"] and merged.views == {"a": 3, "b": 3}
    assert torch.equal(logits, torch.tensor([[2.0, 1.5], [1.0, 2.0]]))
    assert score(merged, 2, expected_views=3)["top1"] == 100.0   # the padded 9.0 would have flipped "b"


def test_label_disagreement_is_an_error_naming_the_sample():
    sums = ViewSums()
    sums.add(["clip7"], torch.zeros(1, 3), torch.tensor([1]))
    with pytest.raises(ValueError, match="clip7"):
        sums.add(["clip7"], torch.zeros(1, 3), torch.tensor([2]))


def test_base2novel_results_shape_and_table(tmp_path):
    base = {"top1": 80.0, "top5": 95.0, "num_samples": 10, "num_classes": 5}
    novel = {"top1": 40.0, "top5": 70.0, "num_samples": 12, "num_classes": 5}
    r = base2novel_results("ucf101", base, novel)
    need = {"protocol", "dataset", "base_top1", "novel_top1", "hm", "num_base_classes", "num_novel_classes"}
    assert need <= set(r) and r["protocol"] == "base2novel" and r["hm"] == pytest.approx(160 / 3)
    j, m = write_results(r, tmp_path)
    assert json.loads(j.read_text()) == r
    assert "| ucf101 | 80.00 | 40.00 | 53.33 | 5 | 5 |" in m.read_text()


def test_cross_results_mean_std_and_full():
    per = {"hmdb51": {"1": {"top1": 50.0, "top5": 80.0, "num_samples": 3, "num_classes": 4},
                      "2": {"top1": 60.0, "top5": 90.0, "num_samples": 3, "num_classes": 4},
                      "3": {"top1": 70.0, "top5": 100.0, "num_samples": 3, "num_classes": 4},
                      "full": {"top1": 61.0, "top5": 91.0, "num_samples": 9, "num_classes": 4}}}
    r = cross_results(per)
    e = r["datasets"]["hmdb51"]
    assert r["protocol"] == "cross" and set(e["splits"]) == {"1", "2", "3"}
    assert e["top1_mean"] == pytest.approx(60.0) and e["top1_std"] == pytest.approx((200 / 3) ** 0.5)
    assert e["top5_mean"] == pytest.approx(90.0) and e["full"]["top1"] == 61.0
    table = markdown_table(r)
    assert "| hmdb51 | mean ± std | 60.00 ± 8.16 | 90.00 ± 8.16 | | |" in table
    assert "| hmdb51 | full | 61.00 | 91.00 | 4 | 9 |" in table


def test_max_missing_is_a_count_or_a_fraction():
    from model.config import ConfigError, load_config
    from model.evaluate import allowed_missing, coverage_problem
    assert load_config(None, ["eval.max_missing=3"]).eval.max_missing == 3
    assert load_config(None, ["eval.max_missing=0.25"]).eval.max_missing == 0.25
    with pytest.raises(ConfigError, match="eval.max_missing"):
        load_config(None, ["eval.max_missing=-1"])
    assert allowed_missing(0, 40) == 0 and allowed_missing(3, 40) == 3 and allowed_missing(0.25, 40) == 10
    health = {"rows": 40, "evaluated": 37, "skipped": 3, "skipped_keys": ["a", "b", "c"]}
    assert coverage_problem("s3://b/eval.parquet", health, 3) is None
    assert coverage_problem("s3://b/eval.parquet", health, 0.1) is None
    problem = coverage_problem("s3://b/eval.parquet", health, 2)
    assert problem == "s3://b/eval.parquet: evaluated 37 of 40 samples (3 missing; skipped: a, b, c)"
