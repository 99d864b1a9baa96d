"""The shard stores written today are byte-identical to the ones written before the storage/merge rework."""
import json

import pytest

from golden_store import GOLDEN, build, encoder_versions


def test_stores_are_byte_identical_to_the_golden_ones(tmp_path):
    with open(GOLDEN) as f:
        golden = json.load(f)
    if golden["encoder"] != encoder_versions():
        pytest.skip(f"golden hashes were written with {golden['encoder']}, this machine has {encoder_versions()}")
    got = build(str(tmp_path))
    assert sorted(got) == sorted(golden["files"])
    changed = [name for name, digest in golden["files"].items() if got[name] != digest]
    assert not changed, changed
