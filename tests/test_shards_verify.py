"""tools/verify_shards.py: every injected fault of a shard store is reported by file and key, with exit status 1."""
import os
import shutil
import struct
import subprocess
import sys

import boto3
import pytest

from shards.convert import convert_dataset
from shards.index import parse_index
from shards.manifest import read_manifest
from shards.generated.synthetic import make_hmdb51

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "verify_shards.py")


def verify(store):
    res = subprocess.run([sys.executable, TOOL, store], capture_output=True, text=True, timeout=120)
    return res.returncode, res.stdout, res.stderr


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory):
    syn = make_hmdb51(str(tmp_path_factory.mktemp("verify_src")), num_classes=3, per_class=4, quirks=False)
    out = str(tmp_path_factory.mktemp("verify") / "store")
    # keyframe interval 16: samples small enough that a 20 kB shard holds several of them
    convert_dataset("hmdb51", syn.root, out, workers=1, shard_size="20kB", progress=False, keyframe_interval=16)
    return out


@pytest.fixture
def store(clean_store, tmp_path):
    out = str(tmp_path / "store")
    shutil.copytree(clean_store, out)
    return out


def _rows(store):
    rows = read_manifest(store).to_pylist()
    assert len({r["shard"] for r in rows}) >= 2 and any(
        sum(r["shard"] == s for r in rows) >= 2 for s in {r["shard"] for r in rows})
    return rows


def _member(store, row, ext):
    """(data offset, size) of one member of a sample, from the shard's index."""
    with open(os.path.join(store, row["shard"][:-4] + ".idx")) as f:
        sample = next(s for s in parse_index(f.read()) if s.key == row["key"])
    m = next(m for m in sample.members if m.ext == ext)
    return m.offset, m.size


def _patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_a_clean_store_passes(store):
    rc, out, _ = verify(store)
    assert rc == 0 and "verdict    clean" in out and "problems   0" in out


def test_lbl_rewritten_to_another_valid_class(store):
    rows = _rows(store)
    victims = rows[:2]
    for r in victims:
        offset, _ = _member(store, r, "lbl")
        _patch(os.path.join(store, r["shard"]), offset, struct.pack("<i", (r["label"] + 1) % 3))
    rc, out, _ = verify(store)
    assert rc == 1
    for r in victims:
        assert f"{r['shard']}: {r['key']}: label: .lbl holds {(r['label'] + 1) % 3}" in out
    assert "problems   2 (label: 2)" in out


def test_idx_offsets_pointing_at_other_samples(store):
    rows = _rows(store)
    shard = next(s for s in {r["shard"] for r in rows} if sum(r["shard"] == s for r in rows) >= 2)
    idx = os.path.join(store, shard[:-4] + ".idx")
    lines = open(idx).read().splitlines()
    head, body = lines[0], [line.split() for line in lines[1:]]
    moved = []
    for i, fields in enumerate(body):           # each sample's offsets become the next sample's
        nxt = body[(i + 1) % len(body)]
        moved.append(" ".join(f if j % 4 != 1 else nxt[j] for j, f in enumerate(fields)))
    with open(idx, "w") as f:
        f.write("\n".join([head] + moved) + "\n")
    rc, out, _ = verify(store)
    assert rc == 1
    for r in rows:
        if r["shard"] == shard:
            assert f"{shard[:-4]}.idx: {r['key']}: index: line" in out


def test_truncated_tar(store):
    rows = _rows(store)
    shard = rows[0]["shard"]
    path = os.path.join(store, shard)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    rc, out, _ = verify(store)
    assert rc == 1 and f"{shard}: truncated:" in out


def test_orphaned_and_missing_shards(store):
    rows = _rows(store)
    first, last = rows[0]["shard"], rows[-1]["shard"]
    shutil.copy(os.path.join(store, first), os.path.join(store, "all-000099.tar"))
    shutil.copy(os.path.join(store, first[:-4] + ".idx"), os.path.join(store, "all-000099.idx"))
    os.remove(os.path.join(store, last))
    rc, out, _ = verify(store)
    assert rc == 1
    assert "all-000099.tar: orphaned" in out and "all-000099.idx: orphaned" in out
    n = sum(r["shard"] == last for r in rows)
    assert f"{last}: missing shard: {n} samples of the manifest" in out


def test_corrupt_mp4_bytes(store):
    rows = _rows(store)
    r = rows[-1]
    offset, size = _member(store, r, "mp4")
    _patch(os.path.join(store, r["shard"]), offset + size // 2, b"\xde\xad\xbe\xef")
    rc, out, _ = verify(store)
    assert rc == 1 and f"{r['shard']}: {r['key']}: sha256:" in out and "problems   1 (sha256: 1)" in out


def test_bad_usage_and_unreadable_store_exit_2(tmp_path):
    rc, _, err = verify(str(tmp_path / "nothing"))
    assert rc == 2 and err.count("\n") == 1 and f"{tmp_path}/nothing/manifest.parquet" in err
    res = subprocess.run([sys.executable, TOOL], capture_output=True, text=True)
    assert res.returncode == 2
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.parquet").write_bytes(b"not parquet at all")
    rc, _, err = verify(str(broken))
    assert rc == 2 and f"{broken}/manifest.parquet: not a readable Parquet file" in err and err.count("\n") == 1


def test_s3_store_clean_then_a_rewritten_label_is_found(s3_bucket, clean_store, s3_endpoint):
    url = f"s3://{s3_bucket}/store"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for name in os.listdir(clean_store):
        if os.path.isfile(os.path.join(clean_store, name)):
            s3.upload_file(os.path.join(clean_store, name), s3_bucket, f"store/{name}")
    rc, out, _ = verify(url)
    assert rc == 0 and "verdict    clean" in out
    r = _rows(clean_store)[0]
    offset, _ = _member(clean_store, r, "lbl")
    data = bytearray(open(os.path.join(clean_store, r["shard"]), "rb").read())
    data[offset:offset + 4] = struct.pack("<i", (r["label"] + 2) % 3)
    s3.put_object(Bucket=s3_bucket, Key=f"store/{r['shard']}", Body=bytes(data))
    rc, out, _ = verify(url)
    assert rc == 1 and f"{r['shard']}: {r['key']}: label:" in out
