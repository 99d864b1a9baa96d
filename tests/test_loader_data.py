"""Bad shard data is caught, never silently trained on: a truncated tar is reported (its lost samples counted and
named), a `.lbl` that disagrees with the split row or names no class is an error naming the key, and split
offsets that point at other samples are an error naming the key. Shards written by the project's ShardBuilder."""
from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.loader import LoaderConfig, build_loader
from pipeline.reader import ShardDataError
from shards.index import parse_index
from shards.storage import Store
from shards.generated.synthetic import vp9_mp4
from shards.writer import ShardBuilder, sample_members

SMALL = dict(batch_size=2, num_frames=4, frame_stride=2, crop_size=24, short_side_range=(24, 28), num_threads=1,
             prefetch=1)
N = 12


def _vp9(seed: int) -> bytes:
    frames = np.random.default_rng(seed).integers(0, 255, (10, 32, 48, 3), dtype=np.uint8)
    return vp9_mp4(frames)


@pytest.fixture
def store(tmp_path):
    """Two shards of 6 samples each and a split file over all 12: (folder, split path)."""
    folder = tmp_path / "store"
    st = Store(str(folder))
    rows = []
    video = _vp9(0)
    for n in range(2):
        b = ShardBuilder(st, f"train-{n:06d}")
        for i in range(6):
            key = f"clip{n * 6 + i:02d}"
            off, size = b.add(key, sample_members(key, video, {"key": key}, (n * 6 + i) % 3, 10))
            rows.append({"key": key, "shard": str(folder / f"train-{n:06d}.tar"), "offset": off, "size": size,
                         "label": (n * 6 + i) % 3, "class_name": "abc"[(n * 6 + i) % 3],
                         "source_label": (n * 6 + i) % 3, "num_frames": 10})
        b.commit()
    pq.write_table(pa.Table.from_pylist(rows).replace_schema_metadata({b"classes_file": b"classes.parquet"}),
                   folder / "split.parquet")
    pq.write_table(pa.table({"label": [0, 1, 2], "class_name": list("abc"), "prompt": list("abc")}),
                   folder / "classes.parquet")
    return folder, str(folder / "split.parquet")


def _test_cfg() -> LoaderConfig:
    return LoaderConfig(**SMALL, train=False, num_views=1)


def test_a_tar_truncated_to_half_is_reported_with_its_lost_samples(store, caplog):
    folder, split = store
    tar = folder / "train-000001.tar"
    os.truncate(tar, tar.stat().st_size // 2)
    with caplog.at_level(logging.ERROR, logger="pipeline.loader"):
        loader = build_loader(split, _test_cfg())
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and str(tar) in said[0] and "truncated" in said[0]
    lost = loader.stats["skipped_keys"]
    assert 2 <= len(lost) <= 4 and all(k >= "clip06" for k in lost)       # the second shard's second half
    assert loader.stats["decode_errors"] == len(lost)
    valid = [k for b in loader for k, ok in zip(b.keys, b.valid.tolist()) if ok]
    assert sorted(valid) == sorted(f"clip{i:02d}" for i in range(N) if f"clip{i:02d}" not in lost)
    assert loader.stats["read"] == N - len(lost) and loader.stats["rows"] == N


def _patch_lbl(folder, key: str, value: int) -> None:
    shard = folder / "train-000000.tar"
    entry = next(s for s in parse_index((folder / "train-000000.idx").read_text()) if s.key == key)
    lbl = next(m for m in entry.members if m.ext == "lbl")
    with open(shard, "r+b") as f:
        f.seek(lbl.offset)
        f.write(int(value).to_bytes(4, "little", signed=True))


@pytest.mark.parametrize("value", [2, 99])
def test_a_label_member_that_disagrees_with_the_split_is_an_error_naming_the_key(store, value):
    folder, split = store
    _patch_lbl(folder, "clip03", value)                      # clip03's split row says source_label 0
    for train in (False, True):
        loader = build_loader(split, LoaderConfig(**SMALL, train=train, num_views=1, shuffle="sample"))
        with pytest.raises(ShardDataError, match=rf"sample 'clip03' .*\.lbl holds label {value} but the split row "
                                                 r"says source_label 0"):
            list(loader)
        assert loader.stats["skipped_keys"] == []


def test_offsets_that_point_at_other_samples_are_an_error_naming_the_key(store):
    folder, split = store
    rows = pq.read_table(split)
    offsets = rows.column("offset").to_pylist()
    offsets[4], offsets[5] = offsets[5], offsets[4]          # clip04 and clip05 swapped
    bad = rows.set_column(rows.column_names.index("offset"), "offset", pa.array(offsets, pa.int64()))
    pq.write_table(bad, split)
    loader = build_loader(split, _test_cfg())
    with pytest.raises(ShardDataError, match=r"sample 'clip0[45]' .*holds 'clip0[45]\.mp4' there, not a member of"):
        list(loader)
