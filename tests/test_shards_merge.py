"""`make_shards --merge`: Arrow's sort gives exactly the bytes of the per-row Python sort it replaced."""
import os
import sys

from shards import manifest as mf
from shards.convert import merge
from shards.storage import Store

from tool_module import load_tool

_bench = load_tool("bench/merge")
SPLITS, merge_baseline, write_fragments = _bench.SPLITS, _bench.merge_baseline, _bench.write_fragments


def test_merge_of_many_fragments_is_byte_identical_to_the_python_sort(tmp_path):
    out = str(tmp_path / "store")
    write_fragments(out, fragments=60, rows=40, rejects_per=3)
    manifest, rejects = merge(out)
    old_manifest, old_rejects = merge_baseline(out)
    store = Store(out)
    assert store.read_bytes(mf.MANIFEST) == mf.table_bytes(old_manifest)
    assert store.read_bytes(mf.REJECTS) == mf.table_bytes(old_rejects)
    # the order is the documented one: the dataset's split order (not alphabetical), then shard, then offset
    splits = manifest["split"].to_pylist()
    assert [s for i, s in enumerate(splits) if i == 0 or splits[i - 1] != s] == SPLITS
    assert manifest.num_rows == 60 * 40 and rejects.num_rows == 60 * 3


def test_bench_merge_prints_its_table():
    import subprocess

    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "bench", "merge.py")
    res = subprocess.run([sys.executable, tool, "--fragments", "4,8", "--rows", "10", "--baseline-max", "4"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["fragments", "rows", "merge_s"] and len(lines) == 3
    assert lines[1].split()[:2] == ["4", "40"] and lines[1].split()[-1] == "yes"     # baseline run, identical
    assert lines[2].split()[:2] == ["8", "80"] and lines[2].split()[-1] == "-"       # above --baseline-max
