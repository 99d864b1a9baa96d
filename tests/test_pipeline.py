"""The DALI video pipeline on the CPU: real shards from `shards.convert`, real split files from `shards.splits`,
real VP9 decoding, compared with PyAV; S3 through moto_server; two real processes for rank partitioning."""
from __future__ import annotations

import io
import json
import logging
import os
import struct
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.loader import LoaderConfig, build_loader
from pipeline.sampling import (CLIP_MEAN, CLIP_STD, batch_rng, clip_indices, dense_indices, draw_batch_params,
                               flip_changes_label, segment_indices, window_length)
from shards.index import build_index, parse_index
from shards.generated.synthetic import vp9_mp4

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(batch_size=4, num_frames=4, frame_stride=4, crop_size=32, short_side_range=(32, 40), num_threads=1)


# ------------------------------------------------------------------------------------------------ test data


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    """A tiny UCF101 converted by the shard store, plus base-to-novel split files made by `shards.splits`."""
    from shards.convert import convert_dataset
    from shards.splits import Manifest, base2novel, write_plan
    from shards.generated.synthetic import make_ucf101

    root = tmp_path_factory.mktemp("ucf")
    make_ucf101(str(root / "src"), num_classes=4, groups=4, clips=2, width=64, height=48, num_frames=36, seed=1)
    convert_dataset("ucf101", str(root / "src"), str(root / "store"), workers=1, shard_size="60KB", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_plan(base2novel(Manifest.load(str(root / "store")), shots=2, seed=0, num_train_sets=1), str(root / "splits"))
    folder = root / "splits" / "base2novel" / "ucf101"
    return {"store": str(root / "store"), "train": str(folder / "train_s1.parquet"),
            "eval": str(folder / "eval_base.parquet"), "root": root}


def _rows(split: str) -> list[dict]:
    return pq.read_table(split).to_pylist()


def _vp9(frames: np.ndarray) -> bytes:
    return vp9_mp4(frames, crf="10", g="8")


def _write_shard_and_split(folder: Path, samples: list[tuple[str, bytes, int, int]], class_names: list[str]) -> str:
    """A shard in the Formats contract (mp4/json/lbl/nfr + DALI index) and a split file over all its samples.

    samples: (key, mp4 bytes, source label, frame count)."""
    folder.mkdir(parents=True, exist_ok=True)
    tar_path = folder / "train-000000.tar"
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for key, data, label, n in samples:
            for ext, payload in (("mp4", data), ("json", json.dumps({"key": key}).encode()),
                                 ("lbl", struct.pack("<i", label)), ("nfr", struct.pack("<i", n))):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    with open(tar_path, "rb") as f:
        index = build_index(f)
    (folder / "train-000000.idx").write_text(index)
    entries = {s.key: s for s in parse_index(index)}
    rows = pa.table({
        "key": [k for k, *_ in samples], "shard": [str(tar_path)] * len(samples),
        "offset": [entries[k].offset for k, *_ in samples], "size": [entries[k].size for k, *_ in samples],
        "label": [lb for _, _, lb, _ in samples], "class_name": [class_names[lb] for _, _, lb, _ in samples],
        "source_label": [lb for _, _, lb, _ in samples]})
    pq.write_table(rows.replace_schema_metadata({b"classes_file": b"classes_all.parquet"}), folder / "all.parquet")
    pq.write_table(pa.table({"label": list(range(len(class_names))), "class_name": class_names,
                             "prompt": class_names}), folder / "classes_all.parquet")
    return str(folder / "all.parquet")


def _video(table, key: str) -> bytes:
    """The stored `{key}.mp4` of a loader's table, read from its tar with the standard library."""
    i = table.keys.index(key)
    with tarfile.open(table.shards[table.shard[i]]) as tf:
        return tf.extractfile(f"{key}.mp4").read()


def _pyav_frames(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _denorm(clips: torch.Tensor) -> np.ndarray:
    """B x T x 3 x H x W normalised -> B x T x H x W x 3 in 0..255."""
    mean = torch.tensor(CLIP_MEAN).view(1, 1, 3, 1, 1) * 255
    std = torch.tensor(CLIP_STD).view(1, 1, 3, 1, 1) * 255
    return (clips.float() * std + mean).permute(0, 1, 3, 4, 2).numpy()


# ------------------------------------------------------------------------------------------ frame arithmetic


def test_dense_training_window():
    T, stride, n = 8, 16, 200
    assert window_length(T, stride) == 113            # a 112-frame window: frames start .. start + 112
    delta = n - 113
    assert dense_indices(n, T, stride, 0.0, train=True).tolist() == [16 * i for i in range(8)]
    last = dense_indices(n, T, stride, np.nextafter(np.float32(1), np.float32(0)), train=True)
    assert last[0] == delta and last[-1] == n - 1      # the window can end on the last frame, never past it
    starts = {int(dense_indices(n, T, stride, r, train=True)[0]) for r in np.linspace(0, 0.9999, 2000)}
    assert starts == set(range(delta + 1))


def test_dense_test_views_start_at_thirds():
    n, T, stride = 200, 8, 16
    delta = n - 113
    starts = [int(dense_indices(n, T, stride, v / 3, train=False)[0]) for v in range(3)]
    assert starts == [0, delta // 3, (2 * delta) // 3]


def test_short_clips_clamp_to_last_frame():
    assert dense_indices(5, 8, 16, 0.7, train=True).tolist() == [0, 4, 4, 4, 4, 4, 4, 4]
    assert dense_indices(40, 4, 16, 0.5, train=False).tolist() == [0, 16, 32, 39]
    assert segment_indices(3, 8, np.full(8, 0.5)).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert dense_indices(0, 4, 4, 0.3, train=True).tolist() == [0, 0, 0, 0]


def test_segment_sampling():
    n, T = 80, 8
    assert segment_indices(n, T, np.full(T, 0.5)).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]  # middle frames
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = segment_indices(n, T, rng.random(T, dtype=np.float32))
        assert all(10 * i <= x < 10 * (i + 1) for i, x in enumerate(idx))          # one frame per segment


def test_augmentation_parameter_ranges_and_determinism():
    p = draw_batch_params(batch_rng(3, 1, 0, 5), 4000, 8, train=True, short_side_range=(224, 256), crop_size=224)
    assert p.short.min() == 224 and p.short.max() == 256 and set(np.unique(p.short)) <= set(range(224, 257))
    for a in (p.crop_x, p.crop_y, p.r):
        assert a.min() >= 0 and a.max() < 1
    assert 0.45 < p.flip.mean() < 0.55 and set(np.unique(p.flip)) == {0, 1}
    q = draw_batch_params(batch_rng(3, 1, 0, 5), 4000, 8, train=True, short_side_range=(224, 256), crop_size=224)
    assert np.array_equal(p.r, q.r) and np.array_equal(p.flip, q.flip)
    other = draw_batch_params(batch_rng(3, 2, 0, 5), 4000, 8, train=True, short_side_range=(224, 256), crop_size=224)
    assert not np.array_equal(p.r, other.r)
    t = draw_batch_params(None, 6, 8, train=False, short_side_range=(224, 256), crop_size=224, num_views=3)
    assert (t.crop_x == 0.5).all() and (t.crop_y == 0.5).all() and (t.flip == 0).all() and (t.short == 224).all()
    assert t.r.shape == (6, 24) and np.allclose(t.r[:, ::8], [0, 1 / 3, 2 / 3])   # all views of a sample at once
    seg = draw_batch_params(batch_rng(0, 0, 0, 0), 5, 8, train=True, short_side_range=(224, 256), crop_size=224,
                            sampling="segment")
    assert len(np.unique(seg.r[0])) == 8 and (p.r == p.r[:, :1]).all()   # a dense window has one start per clip
    with pytest.raises(ValueError, match="short_side_range"):
        draw_batch_params(batch_rng(0, 0, 0, 0), 2, 8, train=True, short_side_range=(200, 256), crop_size=224)


def test_flip_rule_names():
    assert flip_changes_label("Pushing something from left to right")
    assert flip_changes_label("RedCircleMovingLeft") and flip_changes_label("turn_right")
    assert not flip_changes_label("playing cello") and not flip_changes_label("Copyright") and not flip_changes_label("Bright")


# ------------------------------------------------------------------------------------------------ the graph


@pytest.mark.parametrize("sampling", ["dense", "segment"])
def test_graph_frame_indices_match_sampling_rules(ucf, sampling):
    cfg = LoaderConfig(**SMALL, sampling=sampling, seed=7)
    loader = build_loader(ucf["train"], cfg)
    frames_of = {r["key"]: r["num_frames"] for r in _rows(ucf["train"])}
    n_batches = 0
    for b, batch in enumerate(loader):
        params = loader.batch_params(0, b)
        for i, key in enumerate(batch.keys):
            want = clip_indices(frames_of[key], 4, sampling, 4, params.r[i], train=True)
            assert batch.frames[i].tolist() == want.tolist(), key
        n_batches += 1
    assert n_batches == len(loader)


def test_pixels_match_pyav_at_same_indices(ucf):
    """Test mode with crop = short side: DALI's output, de-normalised, is PyAV's frames at the same indices.
    Every sample of the store, including its portrait video and its clip shorter than 8 frames."""
    cfg = LoaderConfig(**{**SMALL, "crop_size": 48, "batch_size": 6}, train=False, num_views=3)
    loader = build_loader(ucf["store"], cfg)
    checked, portrait, short = 0, False, False
    for batch in loader:
        got = _denorm(batch.clips)
        assert got.shape[1:] == (4, 48, 48, 3)
        for i, key in enumerate(batch.keys):
            ref = _pyav_frames(_video(loader.table, key))
            idx = batch.frames[i].numpy()
            h, w = ref.shape[1:3]                                    # 64x48, or 48x64 for the portrait video
            portrait |= h > w
            short |= len(ref) < 8
            y, x = (h - 48) // 2, (w - 48) // 2
            want = ref[idx][:, y:y + 48, x:x + 48].astype(np.float32)   # the centre 48x48
            diff = np.abs(got[i] - want)
            assert diff.mean() < 3.0 and np.percentile(diff, 99) <= 32, (key, diff.mean())   # chroma edges differ most
            other = ref[np.clip(idx + 9, 0, len(ref) - 1)][:, y:y + 48, x:x + 48].astype(np.float32)
            if not np.array_equal(np.clip(idx + 9, 0, len(ref) - 1), idx):
                assert np.abs(got[i] - other).mean() > diff.mean()    # the comparison can tell frames apart
            checked += 1
    assert checked == len(loader) * loader.rows_per_batch >= 3 * len(loader.table)
    assert portrait and short


def test_test_mode_sees_every_sample_once_per_view(ucf):
    cfg = LoaderConfig(**{**SMALL, "batch_size": 6}, train=False, num_views=3)
    loader = build_loader(ucf["eval"], cfg)
    rows = _rows(ucf["eval"])
    label_of = {r["key"]: r["label"] for r in rows}
    frames_of = {r["key"]: r["num_frames"] for r in rows}
    seen = []
    for batch in loader:
        assert batch.clips.shape == (6, 4, 3, 32, 32) and batch.labels.dtype == torch.int64   # 2 samples x 3 views
        for key, lb, v, ok, fr in zip(batch.keys, batch.labels.tolist(), batch.views.tolist(), batch.valid.tolist(),
                                      batch.frames.tolist()):
            assert lb == label_of[key]
            assert fr == clip_indices(frames_of[key], 4, "dense", 4, np.full(4, v / 3, np.float32), train=False).tolist()
            if ok:
                seen.append((key, v))
    assert sorted(seen) == sorted((r["key"], v) for r in rows for v in range(3))
    assert loader.num_samples == len(rows) and [c[1] for c in loader.classes] == \
        pq.read_table(str(Path(ucf["eval"]).parent / "classes_base.parquet")).column("class_name").to_pylist()


def test_split_restriction_reads_only_split_keys(ucf):
    split = _rows(ucf["train"])
    cfg = LoaderConfig(**SMALL, train=False, num_views=1)
    loader = build_loader(ucf["train"], cfg)
    keys = {k for b in loader for k, ok in zip(b.keys, b.valid.tolist()) if ok}
    assert keys == {r["key"] for r in split}
    # the reader read exactly the split's samples' spans (one pread each, padding slots again), though the shards
    # hold more, and wrote nothing
    t = loader.table
    slots = len(loader) * loader.slots
    assert loader.stats["requests"] == slots
    plan = loader.plan(0)
    assert loader.stats["bytes_read"] == int(t.size[plan.sample].sum())
    everything = set(pq.read_table(os.path.join(ucf["store"], "manifest.parquet")).column("key").to_pylist())
    assert len(everything) > len(keys)
    assert loader.stats["bytes_read"] < sum(os.path.getsize(u) for u in t.shards)
    assert loader.stats["rows"] == loader.stats["read"] == len(split) and loader.stats["batches"] == len(loader)
    assert loader.cache_dir is None
    loader.close()


def test_manifest_mode_reads_the_store(ucf):
    cfg = LoaderConfig(**SMALL, train=False, num_views=1)
    loader = build_loader(ucf["store"], cfg)
    manifest = pq.read_table(os.path.join(ucf["store"], "manifest.parquet")).to_pylist()
    got = {k: lb for b in loader for k, lb, ok in zip(b.keys, b.labels.tolist(), b.valid.tolist()) if ok}
    assert got == {r["key"]: r["label"] for r in manifest}
    narrowed = build_loader(ucf["store"], LoaderConfig(**SMALL, train=False, num_views=1, shards="all-000000.tar"))
    assert set(narrowed.table.keys) == {r["key"] for r in manifest if r["shard"].endswith("all-000000.tar")}
    assert len(build_loader(ucf["store"], LoaderConfig(**SMALL, manifest_split="all")).table) == len(manifest)
    with pytest.raises(ValueError, match="no samples match"):
        build_loader(ucf["store"], LoaderConfig(**SMALL, manifest_split="validation"))


def test_epochs_reshuffle_and_resume_exactly_mid_epoch(ucf):
    cfg = LoaderConfig(**{**SMALL, "batch_size": 2}, seed=3)
    a = build_loader(ucf["store"], cfg)
    assert len(a) >= 3
    a.set_epoch(1)
    full = [(b.keys, b.clips.clone(), b.frames.clone()) for b in a]
    assert a.state_dict()["epoch"] == 2 and a.state_dict()["batch"] == 0
    b = build_loader(ucf["store"], cfg)
    b.set_epoch(0)
    epoch0 = [k for batch in b for k in batch.keys]
    assert epoch0 != [k for keys, _, _ in full for k in keys]          # a new order every epoch

    by_shard = build_loader(ucf["store"], LoaderConfig(**{**SMALL, "batch_size": 2}, seed=3, shuffle="shard"))
    orders = [[k for batch in by_shard for k in batch.keys] for _ in range(2)]
    shard_of = dict(zip(by_shard.table.keys, by_shard.table.shard.tolist()))
    for order in orders:                                                # each shard's samples come together
        runs = [shard_of[k] for i, k in enumerate(order) if i == 0 or shard_of[k] != shard_of[order[i - 1]]]
        assert len(runs) == len(set(runs)) and len(set(order)) == len(order)
    assert orders[0] != orders[1]

    c = build_loader(ucf["store"], cfg)
    c.set_epoch(1)
    it = iter(c)
    first = next(it)
    state = c.state_dict()
    assert state["epoch"] == 1 and state["batch"] == 1
    del it
    d = build_loader(ucf["store"], cfg)                                 # a fresh process would do the same
    d.load_state_dict(state)
    rest = [(b.keys, b.clips, b.frames) for b in d]
    assert first.keys == full[0][0]
    assert [r[0] for r in rest] == [f[0] for f in full[1:]]
    for (_, clips, frames), (_, want, want_frames) in zip(rest, full[1:]):
        assert torch.equal(frames, want_frames) and torch.equal(clips, want)   # same augmentation too


_RANK_SCRIPT = """
import json, sys
import torch.distributed as dist
from pipeline.loader import LoaderConfig, build_loader
split, rank, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + port, rank=rank, world_size=2)
out = {}
for train in (False, True):
    cfg = LoaderConfig(batch_size=4, num_frames=4, frame_stride=4, crop_size=32, short_side_range=(32, 40),
                       num_threads=1, train=train, num_views=2, seed=5)
    loader = build_loader(split, cfg, rank=None, world_size=None)   # rank and world size from torch.distributed
    rows = [(k, v, ok) for b in loader
            for k, v, ok in zip(b.keys, (b.views.tolist() if b.views is not None else [0] * len(b.keys)), b.valid.tolist())]
    out["train" if train else "test"] = {"len": len(loader), "rows": rows, "num_samples": loader.num_samples}
dist.destroy_process_group()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_two_processes_partition_the_split(ucf):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    keys = {r["key"] for r in _rows(os.path.join(ucf["store"], "manifest.parquet"))}
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    procs = [subprocess.Popen([sys.executable, "-c", _RANK_SCRIPT, ucf["store"], str(r), port],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True) for r in (0, 1)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    for mode in ("test", "train"):
        outs = [r[mode] for r in results]
        assert outs[0]["len"] == outs[1]["len"]                               # equal batch counts on every rank
        per_rank = [{k for k, _, ok in o["rows"] if ok} for o in outs]
        assert not per_rank[0] & per_rank[1]                                   # disjoint
        if mode == "train":
            assert all(len(o["rows"]) == len(set(k for k, _, _ in o["rows"])) for o in outs)
            assert len(per_rank[0] | per_rank[1]) == 2 * outs[0]["num_samples"] > len(keys) - 2 * 4
        else:
            valid = [(k, v) for o in outs for k, v, ok in o["rows"] if ok]
            assert len(valid) == len(set(valid)) == 2 * len(keys)              # every (sample, view) exactly once
            assert per_rank[0] | per_rank[1] == keys


def test_bad_sample_is_skipped_counted_and_named(tmp_path, caplog):
    rng = np.random.default_rng(0)
    good = [_vp9(rng.integers(0, 255, (12, 32, 48, 3), dtype=np.uint8)) for _ in range(5)]
    samples = [(f"clip{i}", good[i], i % 2, 12) for i in range(5)]
    samples.insert(2, ("broken", b"\x1a\x45\xdf\xa3 this is not a video" * 20, 0, 12))
    split = _write_shard_and_split(tmp_path / "bad", samples, ["a", "b"])
    for train in (False, True):
        cfg = LoaderConfig(**{**SMALL, "batch_size": 2, "crop_size": 24, "short_side_range": (24, 28)},
                           train=train, num_views=1, prefetch=1)
        loader = build_loader(split, cfg)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pipeline.loader"):
            batches = list(loader)
        said = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
        assert len(said) == 1 and "does not decode" in said[0], said       # one line, one channel
        assert len(batches) == len(loader)
        assert loader.stats["decode_errors"] == 1 and loader.stats["skipped_keys"] == ["broken"]
        valid = [k for b in batches for k, ok in zip(b.keys, b.valid.tolist()) if ok]
        assert "broken" not in valid
        if not train:
            assert sorted(valid) == [f"clip{i}" for i in range(5)]
        assert loader.state_dict()["skipped_keys"] == ["broken"]


def test_flip_never_mirrors_left_right_classes(tmp_path):
    frames = np.zeros((10, 32, 48, 3), np.uint8)
    frames[:, :, 24:] = 255                                       # dark left half, bright right half
    data = _vp9(frames)
    samples = [(f"s{i}", data, i % 2, 10) for i in range(16)]
    split = _write_shard_and_split(tmp_path / "flip", samples, ["Pushing something from left to right", "waving"])
    small = {**SMALL, "batch_size": 8, "crop_size": 32, "short_side_range": (32, 32)}

    def mirrored(cfg):
        out = {0: [], 1: []}
        for b in build_loader(split, cfg):
            img = _denorm(b.clips)
            for lb, clip in zip(b.labels.tolist(), img):
                out[lb].append(bool(clip[..., :4, :].mean() > clip[..., -4:, :].mean()))
        return out

    default = mirrored(LoaderConfig(**small, seed=1))
    assert not any(default[0])                                   # "left to right" is never mirrored
    assert any(default[1]) and not all(default[1])               # other classes are, about half the time
    forced = mirrored(LoaderConfig(**small, seed=1, force_flip=True))
    assert any(forced[0])
    none = mirrored(LoaderConfig(**small, seed=1, flip=False))
    assert not any(none[0]) and not any(none[1])


@pytest.mark.parametrize("dtype,torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_dtypes(ucf, dtype, torch_dtype):
    loader = build_loader(ucf["eval"], LoaderConfig(**SMALL, train=False, num_views=1, dtype=dtype))
    batch = next(iter(loader))
    assert batch.clips.dtype == torch_dtype and batch.clips.device.type == "cpu"
    assert batch.clips.float().abs().max() < 3


def test_errors_are_clear(ucf, tmp_path):
    with pytest.raises(RuntimeError, match="needs CUDA") if not torch.cuda.is_available() else pytest.raises(ValueError):
        build_loader(ucf["eval"], LoaderConfig(**SMALL, device="gpu" if not torch.cuda.is_available() else "tpu"))
    rows = pq.read_table(ucf["eval"])
    bad = rows.set_column(rows.column_names.index("offset"), "offset", pa.array([7] * rows.num_rows, pa.int64()))
    pq.write_table(bad, tmp_path / "eval_base.parquet")
    (tmp_path / "classes_base.parquet").write_bytes((Path(ucf["eval"]).parent / "classes_base.parquet").read_bytes())
    with pytest.raises(ValueError, match=r"row 0 \(key "):
        build_loader(str(tmp_path / "eval_base.parquet"), LoaderConfig(**SMALL))


def test_reads_s3_through_moto(ucf, s3_bucket):
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    for name in os.listdir(ucf["store"]):
        if os.path.isfile(os.path.join(ucf["store"], name)):
            s3.upload_file(os.path.join(ucf["store"], name), s3_bucket, f"store/{name}")
    # a split file whose rows point at the s3:// shards
    rows = pq.read_table(ucf["eval"])
    urls = [f"s3://{s3_bucket}/store/{os.path.basename(u)}" for u in rows.column("shard").to_pylist()]
    rows = rows.set_column(rows.column_names.index("shard"), "shard", pa.array(urls))
    rows = rows.replace_schema_metadata({**rows.schema.metadata, b"store": f"s3://{s3_bucket}/store".encode()})
    buf = io.BytesIO()
    pq.write_table(rows, buf)
    s3.put_object(Bucket=s3_bucket, Key="splits/eval_base.parquet", Body=buf.getvalue())
    s3.put_object(Bucket=s3_bucket, Key="splits/classes_base.parquet",
                  Body=(Path(ucf["eval"]).parent / "classes_base.parquet").read_bytes())
    cfg = LoaderConfig(**SMALL, train=False, num_views=1)
    remote = build_loader(f"s3://{s3_bucket}/splits/eval_base.parquet", cfg)
    assert all(u.startswith("s3://") for u in remote.table.shards)
    local = build_loader(ucf["eval"], cfg)
    for rb, lb in zip(remote, local):
        assert rb.keys == lb.keys and torch.equal(rb.clips, lb.clips) and torch.equal(rb.labels, lb.labels)


# ------------------------------------------------------------------------------------------ baseline and tools


def test_baseline_decodes_the_same_frames_as_the_pipeline(ucf):
    """The PyAV baseline seeks and decodes the same frames, and augments the same way (test mode: identical rules)."""
    from pipeline.baseline import build_baseline, decode_clip

    cfg = LoaderConfig(**{**SMALL, "crop_size": 48}, train=False, num_views=1)
    loader = build_loader(ucf["eval"], cfg)
    t = loader.table
    for s in range(len(t)):                                    # seeking decoder == full decode at any indices
        data = _video(t, t.keys[s])
        ref = _pyav_frames(data)
        idx = np.array([3, 17, 18, 35]) if len(ref) > 35 else np.arange(4)
        assert np.array_equal(decode_clip(data, np.minimum(idx, len(ref) - 1)), ref[np.minimum(idx, len(ref) - 1)])
    base = build_baseline(ucf["eval"], cfg, num_workers=0)
    base_clips = torch.cat([clips for clips, _ in base])
    base_labels = torch.cat([labels for _, labels in base])
    dali = [(b.clips, b.labels) for b in loader]
    dali_clips = torch.cat([c for c, _ in dali])[: len(t)]
    assert torch.equal(base_labels, torch.cat([lb for _, lb in dali])[: len(t)])
    assert base_clips.shape == dali_clips.shape
    assert (base_clips - dali_clips).abs().mean() < 0.05       # normalised units: ~1.5 grey levels


@pytest.mark.slow
def test_tools_show_batch_and_bench_loader(ucf, tmp_path):
    from PIL import Image

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "batch.png"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "show_batch.py"), "--split", ucf["train"], "--out", str(out),
                        "--batch-size", "2", "--num-frames", "3", "--frame-stride", "4", "--crop-size", "32"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (3 * 32, 2 * (32 + 14))
    classes = pq.read_table(str(Path(ucf["train"]).parent / "classes_base.parquet")).column("class_name").to_pylist()
    assert any(c in r.stdout for c in classes)
    r = subprocess.run([sys.executable, str(REPO / "tools" / "bench" / "loader.py"), "--split", ucf["store"], "--device", "cpu",
                        "--batches", "2", "--warmup", "1", "--batch-size", "2", "--num-frames", "4", "--frame-stride", "4",
                        "--crop-size", "32", "--workers", "1"], capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert any(line.startswith("dali pipeline") for line in lines) and any(line.startswith("pyav dataloader") for line in lines)
    assert lines[-1].startswith("ratio: ") and float(lines[-1].split()[1]) > 0


def test_gpu_graph_is_wired_to_the_device_without_running_it():
    """device="gpu" decodes with the `mixed` (NVDEC) backend and augments on the GPU. Defining the graph needs no
    GPU; running it does, so this test only checks the wiring (nothing is built or run here)."""
    import nvidia.dali as dali

    from pipeline.graph import GraphSpec, define_graph

    for device, where in (("gpu", "gpu"), ("cpu", "cpu")):
        pipe = dali.Pipeline(batch_size=2, num_threads=1, device_id=0 if device == "gpu" else None)
        with pipe:
            clips, labels, idx = define_graph(GraphSpec(device=device, label_map={0: 0}), lambda info: None)
        assert (clips.device, labels.device, idx.device) == (where, "cpu", "cpu")


# ------------------------------------------------------------------------------- fragment cuts (seek by bytes)


@pytest.fixture(scope="module")
def long_ucf(tmp_path_factory):
    """100-frame videos (7 fragments of 16 frames) converted by the shard store, and a split file over them."""
    from shards.convert import convert_dataset
    from shards.splits import Manifest, base2novel, write_plan
    from shards.generated.synthetic import make_ucf101

    root = tmp_path_factory.mktemp("long")
    make_ucf101(str(root / "src"), num_classes=2, groups=4, clips=1, width=64, height=48, num_frames=100,
                quirks=False, seed=4)
    convert_dataset("ucf101", str(root / "src"), str(root / "store"), workers=1, progress=False,
                    keyframe_interval=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_plan(base2novel(Manifest.load(str(root / "store")), shots=2, seed=0, num_train_sets=1),
                   str(root / "splits"))
    return {"store": str(root / "store"), "eval": str(root / "splits" / "base2novel" / "ucf101" / "eval_base.parquet")}


def test_split_rows_carry_the_fragment_table(long_ucf):
    from shards.manifest import read_manifest

    manifest = {r["key"]: r for r in read_manifest(long_ucf["store"]).to_pylist()}
    rows = _rows(long_ucf["eval"])
    assert rows
    for r in rows:
        m = manifest[r["key"]]
        assert r["fragment_offsets"] == m["fragment_offsets"] and r["fragment_frames"] == m["fragment_frames"]
        assert m["fragment_frames"] == list(range(0, 100, 16))


def test_training_windows_in_later_fragments_decode_as_uncut(long_ucf):
    """Cutting each stream at the fragment before its window changes nothing but the work: the clips equal those
    of the same loader decoding every stream from frame 0 (no fragment table), bit for bit."""
    from dataclasses import replace

    from pipeline.loader import VideoLoader
    from pipeline.samples import load

    cfg = LoaderConfig(**{**SMALL, "batch_size": 2}, seed=5, gather=False)    # the single cut (gather: its own tests)
    table = load(long_ucf["store"])
    cut, whole = VideoLoader(table, cfg), VideoLoader(replace(table, fragments=None), cfg)
    offsets = []
    for epoch in range(3):
        cut.set_epoch(epoch)
        whole.set_epoch(epoch)
        plan = cut.plan(epoch)
        for b, (x, y) in enumerate(zip(cut, whole)):
            p = cut.graph_params(plan, epoch, b)
            assert np.all(p.frame_offset <= x.frames.min(dim=1).values.numpy())
            assert np.all(x.frames.min(dim=1).values.numpy() - p.frame_offset < 16)   # the fragment holding it
            offsets += p.frame_offset.tolist()
            assert x.keys == y.keys and torch.equal(x.frames, y.frames)
            assert torch.equal(x.clips, y.clips)
    assert max(offsets) >= 64 and min(offsets) == 0          # windows from the first to the last fragments


def test_test_segments_in_later_fragments_match_pyav(long_ucf):
    """Test mode, 2 segments of one view: the earliest frame is a quarter in, so every stream is cut; the pixels
    are still PyAV's at the same indices."""
    cfg = LoaderConfig(**{**SMALL, "crop_size": 48, "batch_size": 2, "num_frames": 2}, sampling="segment",
                       train=False, num_views=1, gather=False)
    loader = build_loader(long_ucf["store"], cfg)
    t = loader.table
    plan = loader.plan(0)
    checked = 0
    for b, batch in enumerate(loader):
        assert np.all(loader.graph_params(plan, 0, b).frame_offset == 16)     # frame 25 is in fragment 16..31
        got = _denorm(batch.clips)
        for i, key in enumerate(batch.keys):
            if not batch.valid[i]:
                continue
            ref = _pyav_frames(_video(t, key))
            idx = batch.frames[i].numpy()
            assert idx.tolist() == [25, 75]
            want = ref[idx][:, :, 8:56].astype(np.float32)
            diff = np.abs(got[i] - want)
            assert diff.mean() < 3.0 and np.percentile(diff, 99) <= 32, (key, diff.mean())
            assert np.abs(got[i] - ref[idx - 9][:, :, 8:56]).mean() > diff.mean()
            checked += 1
    assert checked == len(t) == 8


def test_fragment_cut_arithmetic():
    """The last fragment starting at or before each sample's first frame; samples without a table stay whole."""
    from pipeline.samples import Fragments

    f = Fragments.from_columns(["a", "b", "c"], [40, 20, 50], [[100, 900, 2000], None, [80, 500]],
                               [[0, 16, 32], None, [0, 24]])
    init, anchor, offset = f.cut(np.array([0, 0, 0, 0, 1, 2, 2, 2]), np.array([0, 15, 16, 39, 7, 23, 24, 49]))
    assert init.tolist() == [100, 100, 100, 100, 0, 80, 80, 80]
    assert anchor.tolist() == [100, 100, 900, 2000, 0, 80, 500, 500]
    assert offset.tolist() == [0, 0, 16, 32, 0, 0, 24, 24]
    assert Fragments.from_columns(["a"], [40], [None], [None]) is None
    with pytest.raises(ValueError, match=r"row 1 \(key 'b'\): broken fragment table"):
        Fragments.from_columns(["a", "b"], [40, 40], [[100], [100, 90]], [[0], [0, 16]])
