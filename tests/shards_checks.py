"""Checks of the whole shard-store contract, shared by the shard tests (plain functions, not tests)."""
from __future__ import annotations

import hashlib
import io
import json
import struct
import subprocess
import tarfile

import av
import numpy as np
import webdataset as wds
from nvidia.dali import fn, pipeline_def

from shards.index import build_index
from shards.manifest import read_classes, read_manifest, read_rejects, store_metadata
from shards.records import KEY_RE
from shards.storage import Store
from shards.transcode import DEFAULT_KEYFRAME_INTERVAL

MEMBERS = ["mp4", "json", "lbl", "nfr"]
NOT_IN_JSON = {"shard", "offset", "size"}


def check_store(out: str, syn, *, codec: str = "vp9", keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL,
                fps: float = 30.0) -> dict:
    """Assert every part of the contract on a converted store; returns {key: manifest row}."""
    store = Store(out)
    manifest = read_manifest(out)
    rejects = read_rejects(out)
    classes = read_classes(out)
    rows = manifest.to_pylist()

    # nothing dropped silently; rejects say why
    assert len(rows) + rejects.num_rows == syn.total
    got_rejects = {r["video_id"]: r["reason"] for r in rejects.to_pylist()}
    assert set(got_rejects) == set(syn.rejects)
    for vid, prefix in syn.rejects.items():
        assert got_rejects[vid].startswith(prefix), (vid, got_rejects[vid])
    assert classes.column("class_name").to_pylist() == syn.classes
    assert classes.column("label").to_pylist() == list(range(len(syn.classes)))
    assert store_metadata(manifest)["dataset"] == syn.dataset

    keys = [r["key"] for r in rows]
    assert len(set(keys)) == len(keys) and all(KEY_RE.match(k) for k in keys)
    for r in rows:
        assert r["label"] == syn.labels[r["video_id"]]
        assert r["class_name"] == (syn.classes[r["label"]] if r["label"] >= 0 else "")
        assert r["dataset"] == syn.dataset

    # every shard: plain tar, index beside it (what wds2idx would write), ranged reads of each sample
    shards = sorted({r["shard"] for r in rows})
    for shard in shards:
        listing = subprocess.run(["tar", "-tf", store.path(shard)], capture_output=True, text=True, check=True).stdout
        mine = [r for r in rows if r["shard"] == shard]
        assert sorted(listing.split()) == sorted(f"{r['key']}.{m}" for r in mine for m in MEMBERS)
        data = store.read_bytes(shard)
        assert store.read_bytes(shard[:-4] + ".idx").decode() == build_index(io.BytesIO(data))
        for r in mine:
            with tarfile.open(fileobj=io.BytesIO(data[r["offset"]:r["offset"] + r["size"]])) as t:
                assert t.getnames() == [f"{r['key']}.{m}" for m in MEMBERS]
                video = t.extractfile(f"{r['key']}.mp4").read()
                meta = json.loads(t.extractfile(f"{r['key']}.json").read())
                label = struct.unpack("<i", t.extractfile(f"{r['key']}.lbl").read())[0]
                nfr = struct.unpack("<i", t.extractfile(f"{r['key']}.nfr").read())[0]
            assert len(video) == r["bytes"] and hashlib.sha256(video).hexdigest() == r["sha256"]
            assert meta == {k: v for k, v in r.items() if k not in NOT_IN_JSON}
            assert label == r["label"] and nfr == r["num_frames"]
            check_stream(video, r, codec, keyframe_interval, fps)

    # webdataset reads every sample
    seen = {s["__key__"]: s for s in wds.WebDataset([store.path(s) for s in shards], shardshuffle=False)}
    assert set(seen) == set(keys)
    assert all(set(MEMBERS) <= set(s) for s in seen.values())
    return {r["key"]: r for r in rows}


def probe(path: str) -> dict:
    """Codec, coded size and stream counts of a video file, from its header (what a test asserts about a source)."""
    with av.open(path, metadata_errors="ignore") as c:
        s = c.streams.video[0]
        return {"codec": s.codec_context.name, "width": s.codec_context.width, "height": s.codec_context.height,
                "audio": len(c.streams.audio)}


def check_stream(video: bytes, row: dict, codec: str, keyframe_interval: int, fps: float) -> None:
    """The stored stream: codec, no audio, yuv420p, size, constant fps, frame count, keyframe spacing."""
    with av.open(io.BytesIO(video)) as c:
        assert c.format.name.startswith("mov,mp4")
        assert len(c.streams.audio) == 0 and len(c.streams.video) == 1
        s = c.streams.video[0]
        assert s.codec_context.name == row["codec"]
        if codec != "copy":
            assert row["codec"] == codec
            assert s.codec_context.pix_fmt == "yuv420p"
            assert float(s.average_rate) == fps == row["fps"]
        frames = list(c.decode(s))
    assert len(frames) == row["num_frames"]
    assert (frames[0].width, frames[0].height) == (row["width"], row["height"])
    if codec != "copy":
        keys = [i for i, f in enumerate(frames) if f.key_frame]
        assert keys == list(range(0, len(frames), keyframe_interval))
        assert abs(row["duration_s"] - row["num_frames"] / fps) < 1e-6


def dali_frame_counts(urls: list[str], index_urls: list[str]) -> dict[str, tuple[int, int, int]]:
    """Decode every sample's full stream with DALI's CPU decoder: key -> (decoded frames, nfr, label)."""

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1)
    def pipe():
        video, meta, nfr, lbl = fn.readers.webdataset(paths=urls, index_paths=index_urls,
                                                      ext=["mp4", "json", "nfr", "lbl"], name="reader",
                                                      missing_component_behavior="error")
        return fn.decoders.video(video, device="cpu"), meta, nfr, lbl

    p = pipe()
    p.build()
    out = {}
    for _ in range(p.epoch_size("reader")):
        frames, meta, nfr, lbl = p.run()
        key = json.loads(np.array(meta[0]).tobytes())["key"]
        out[key] = (frames[0].shape()[0], int(np.array(nfr[0]).view("<i4")[0]), int(np.array(lbl[0]).view("<i4")[0]))
    return out
