"""`s3://` output against a real S3 server (moto_server on loopback): write, resume, read back with DALI."""
import os

import fsspec
import pytest

from shards.convert import convert_dataset, merge
from shards.manifest import read_classes, read_manifest, read_rejects
from shards.storage import Store
from shards_checks import check_store, dali_frame_counts


@pytest.mark.slow
def test_convert_to_s3(s3_bucket, synthetic_ucf101, ucf101_shards, tmp_path):
    url = f"s3://{s3_bucket}/datasets/ucf101"
    summary = convert_dataset("ucf101", synthetic_ucf101.root, url, workers=2, shard_size="24kB", progress=False)
    local, _ = ucf101_shards
    assert summary.merged and summary.samples == read_manifest(local).num_rows

    # the same bytes as a local conversion, under the same names
    m = read_manifest(url)
    assert m.equals(read_manifest(local))
    assert read_rejects(url).equals(read_rejects(local)) and read_classes(url).equals(read_classes(local))
    fs = fsspec.filesystem("s3")
    names = sorted(os.path.basename(p) for p in fs.ls(f"{s3_bucket}/datasets/ucf101"))
    assert "_tmp" not in names and not [n for n in names if n.endswith(".part")]
    for shard in set(m.column("shard").to_pylist()):
        assert fs.cat(f"{s3_bucket}/datasets/ucf101/{shard}") == open(os.path.join(local, shard), "rb").read()

    # the whole contract on a downloaded copy
    copy = str(tmp_path / "copy")
    fs.get(f"{s3_bucket}/datasets/ucf101/", copy, recursive=True)
    check_store(copy, synthetic_ucf101)

    # DALI reads the shards straight from S3 with the index files
    shards = sorted(set(m.column("shard").to_pylist()))
    counts = dali_frame_counts([f"{url}/{s}" for s in shards], [f"{url}/{s[:-4]}.idx" for s in shards])
    rows = {r["key"]: r for r in m.to_pylist()}
    assert {k: v[0] for k, v in counts.items()} == {k: r["num_frames"] for k, r in rows.items()}

    # a re-run resumes: nothing is redone; merge is idempotent
    again = convert_dataset("ucf101", synthetic_ucf101.root, url, workers=1, shard_size="24kB", progress=False)
    assert again.processed == 0 and again.samples == summary.samples
    assert merge(url)[0].equals(m)
    assert Store(url).list("_work")
    assert not os.path.exists(Store(url, tmp_name="_tmp/part-1-of-1").scratch_folder())   # no upload leftovers
