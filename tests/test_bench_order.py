"""tools/bench/order.py end to end on the reduced setting (--quick): the world stored class after class in small
shards by make_shards --order by-class, FROSTER trained in the three training orders through model/train.py
(data.shuffle), each order's mixing measured on the loader's own plan, the table and the last line."""
import json
import re

import pyarrow.parquet as pq
import pytest
from tool_module import run_quick



@pytest.mark.slow
def test_bench_order_quick_prints_the_table_and_the_change(tmp_path):
    out = tmp_path / "order"
    text = run_quick("bench/order", out)
    for row in ("| exact permutation (sample) |", "| interleave |", "| shard order (control) |"):
        assert row in text, row

    # the store is written class after class, in several shards: each shard's rows of a split are one run of
    # labels, in ascending order
    m = pq.read_table(out / "shards" / "manifest.parquet").to_pylist()
    assert len({row["shard"] for row in m}) >= 4
    for split in {row["split"] for row in m}:
        rows = sorted((row for row in m if row["split"] == split), key=lambda row: (row["shard"], row["offset"]))
        labels = [row["label"] for row in rows]
        assert labels == sorted(labels)

    # every run trained in the order it names (its config.yaml); how much each order mixes is measured on the
    # loader's plan (8 training videos of 4 classes in batches of 4 here: too few to order the three reliably,
    # which tests/test_loader_order.py does at scale)
    rep = json.loads((out / "order.json").read_text())
    for o in ("sample", "interleave", "shard"):
        cfg = (out / "runs" / f"order_{o}" / "seed0_set1" / "config.yaml").read_text()
        assert f"shuffle: {o}" in cfg
    assert rep["batch"] == 4 and rep["shards"] >= 4
    assert all(1 <= v <= 4 for v in rep["classes_per_batch"].values()), rep["classes_per_batch"]
    last = text.strip().splitlines()[-1]
    got = re.fullmatch(r"interleave_hm_change: (-?\d+\.\d\d)", last)
    assert got, last
    assert float(got[1]) == pytest.approx(rep["per_pair_hm"]["interleave"][0] - rep["per_pair_hm"]["sample"][0],
                                          abs=0.006)
