"""The DALI index format: our writer's index equals what DALI's own `wds2idx` writes, and subsets read back."""
import io
import json
import os
import tarfile

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def
from wds2idx import IndexCreator

from shards.index import build_index, parse_index, subset_index
from shards.storage import Store
from shards.writer import ShardBuilder, int32_le, sample_members


def _shard(tmp_path, n=5):
    store = Store(str(tmp_path))
    b = ShardBuilder(store, "train-000000")
    spans = []
    for i in range(n):
        key = f"clip-{i}_x"
        members = sample_members(key, os.urandom(700 + 300 * i), {"key": key, "i": i}, i, 10 + i)
        spans.append(b.add(key, members))
    b.commit()
    return store, spans


def test_index_matches_wds2idx(tmp_path):
    store, _ = _shard(tmp_path)
    ours = store.read_bytes("train-000000.idx").decode()
    ref_path = str(tmp_path / "ref.idx")
    with IndexCreator(store.path("train-000000.tar"), ref_path, verbose=False) as ic:
        ic.create_index()
    assert ours == open(ref_path).read()
    with open(store.path("train-000000.tar"), "rb") as f:
        assert build_index(f) == ours


def test_sample_offsets_allow_one_ranged_read(tmp_path):
    store, spans = _shard(tmp_path)
    data = store.read_bytes("train-000000.tar")
    samples = parse_index(store.read_bytes("train-000000.idx").decode())
    assert [(s.offset, s.size) for s in samples] == spans
    for i, (offset, size) in enumerate(spans):
        with tarfile.open(fileobj=io.BytesIO(data[offset:offset + size])) as t:
            names = t.getnames()
            assert names == [f"clip-{i}_x.{e}" for e in ("mp4", "json", "lbl", "nfr")]
            assert t.extractfile(f"clip-{i}_x.lbl").read() == int32_le(i)
            assert json.loads(t.extractfile(f"clip-{i}_x.json").read())["i"] == i
    assert spans[-1][0] + spans[-1][1] <= len(data)
    assert all(a[0] + a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_subset_index_reads_only_those_samples_in_dali(tmp_path):
    store, spans = _shard(tmp_path)
    text = store.read_bytes("train-000000.idx").decode()
    sub = subset_index(text, [spans[3][0], spans[1][0]])
    assert [s.key for s in parse_index(sub)] == ["clip-1_x", "clip-3_x"]
    (tmp_path / "sub.idx").write_text(sub)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        return fn.readers.webdataset(paths=[store.path("train-000000.tar")], index_paths=[str(tmp_path / "sub.idx")],
                                     ext=["json"], name="r")

    p = pipe()
    p.build()
    assert p.epoch_size("r") == 2
    seen = [json.loads(np.array(p.run()[0][0]).tobytes())["i"] for _ in range(2)]
    assert sorted(seen) == [1, 3]


def test_subset_index_rejects_unknown_offsets(tmp_path):
    store, spans = _shard(tmp_path, n=2)
    with pytest.raises(KeyError, match="no sample starts at offset"):
        subset_index(store.read_bytes("train-000000.idx").decode(), [spans[0][0] + 1])


def test_parse_index_names_bad_lines():
    with pytest.raises(ValueError, match="line 1"):
        parse_index("v1.1 2\n")
    with pytest.raises(ValueError, match="line 2"):
        parse_index("v1.2 1\nmp4 512 x a.mp4\n")
    with pytest.raises(ValueError, match="says 2 samples"):
        parse_index("v1.2 2\nmp4 512 10 a.mp4\n")
