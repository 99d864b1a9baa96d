"""tools/predict.py: generated videos in four containers/codecs, an unreadable file, folders, globs and s3://."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from tool_module import load_tool
import torch

from pipeline import files
from shards.generated import synthetic


predict = load_tool("predict")

LABELS = ["red circle moving left", "blue square moving up", "green ring moving right", "yellow triangle moving down"]
FORMATS = {"avi": "mpeg4", "mp4": "h264", "webm": "vp9", "mkv": "h264"}


@pytest.fixture(scope="module")
def frames():
    return synthetic.render(0, "RedCircleMovingLeft", np.random.default_rng(0), 96, 72, 60)


@pytest.fixture(scope="module")
def videos(frames, tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for ext in FORMATS:
        synthetic.write_video(str(root / "clips" / f"red.{ext}"), frames)
    synthetic.write_broken(str(root / "clips" / "broken.mp4"))
    return root / "clips"


@pytest.fixture(scope="module")
def weights(tiny_clip_file):
    return tiny_clip_file


def test_every_container_is_read_and_probed(videos, frames):
    for ext, codec in FORMATS.items():
        data = files.read_bytes(str(videos / f"red.{ext}"))
        p = files.probe(data, ext)
        assert (p.codec, p.num_frames, p.width, p.height) == (codec, 60, 96, 72)
    with pytest.raises(files.VideoError, match="broken.mp4"):
        files.probe(files.read_bytes(str(videos / "broken.mp4")), str(videos / "broken.mp4"))


def test_indices_are_evaluations_test_views():
    idx = files.view_indices(60, 8, 4, 3)
    # dense test views start at floor(delta * v / 3), delta = 60 - 29
    starts = [int(np.floor(np.float32(31) * np.float32(v / 3))) for v in range(3)]
    assert idx.tolist() == [s + 4 * t for s in starts for t in range(8)]
    assert files.view_indices(10, 8, 16, 3).max() == 9  # short videos repeat their last frame


def test_pyav_resampling_is_the_graphs(frames):
    """On the same decoded frames, the PyAV path's transform equals the DALI graph's resize/crop/normalise."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    from pipeline.graph import _crop_resize
    from pipeline.sampling import CLIP_MEAN, CLIP_STD

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1)
    def graph():
        x = fn.external_source(name="x", dtype=types.UINT8, ndim=4, layout="FHWC")
        return fn.crop_mirror_normalize(_crop_resize(x, 64.0, 0.5, 0.5, 64), mean=[m * 255 for m in CLIP_MEAN],
                                        std=[s * 255 for s in CLIP_STD], output_layout="FCHW", dtype=types.FLOAT)

    pipe = graph()
    pipe.build()
    for clip in (frames[:4], np.ascontiguousarray(frames[:4, :, :50])):  # landscape, and portrait
        pipe.feed_input("x", [clip])
        (out,) = pipe.run()
        dali = torch.from_numpy(np.array(out.as_tensor()))[0]
        ours = files.centre_crop_normalise(torch.from_numpy(clip), 64)
        step = 1 / 255 / min(files.CLIP_STD)  # one uint8 level: a rounding tie may land either way
        assert (dali - ours).abs().max() <= step * 1.01
        assert (dali - ours).abs().mean() < step * 0.01


def test_dali_decodes_vp9_like_pyav(videos):
    data = files.read_bytes(str(videos / "red.webm"))
    idx = files.view_indices(60, 8, 4, 3)
    decoder = files.DaliDecoder("cpu", 2, 64)
    assert len(decoder([data, data], [idx, idx[::-1].copy()])) == 2  # full batch, then a partial one
    dali = decoder([data], [idx])[0]
    pyav = files._pyav_clip(data, idx, 64, "red.webm")
    assert dali.shape == pyav.shape == (24, 3, 64, 64)
    assert (dali - pyav).abs().mean() < 0.05  # the two decoders' YUV->RGB conversions differ slightly


def test_predict_every_format_and_report_the_unreadable_file(videos, weights, tmp_path, capsys):
    out = tmp_path / "pred.json"
    rc = predict.main([str(videos), "--labels", ", ".join(LABELS), "--weights", str(weights), "--top-k", "3",
                       "--views", "2", "--json", str(out), "--batch-size", "2", "--no-progress"])
    assert rc == 1  # one video failed
    result = json.loads(out.read_text())
    names = [p["video"] for p in result["predictions"]]
    assert names == [str(videos / f"red.{ext}") for ext in sorted(FORMATS)]
    assert [f["video"] for f in result["failed"]] == [str(videos / "broken.mp4")]
    probs = []
    for p in result["predictions"]:
        assert [t["label"] in LABELS for t in p["top_k"]] == [True] * 3
        ps = [t["probability"] for t in p["top_k"]]
        assert ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1 + 1e-6
        probs.append(dict((t["label"], t["probability"]) for t in p["top_k"]))
    # the same content in four codecs: the same ranking up to the codecs' small differences
    first = probs[0]
    for other in probs[1:]:
        shared = set(first) & set(other)
        assert len(shared) >= 2 and all(abs(first[k] - other[k]) < 0.02 for k in shared)
    text = capsys.readouterr()
    assert "broken.mp4" in text.err and "4 video(s) classified, 1 failed" in text.err
    for name in names:
        assert name in text.out
    assert "views x" in result["model"] and "frostline-tiny" in result["model"]


def test_inputs_globs_folders_and_missing_names(videos, tmp_path):
    got = files.expand_inputs([str(videos / "*.webm"), str(videos), str(tmp_path / "nope.mp4")])
    assert got[0] == str(videos / "red.webm")
    assert got[1:6] == sorted(str(videos / f) for f in os.listdir(videos))
    assert got[-1] == str(tmp_path / "nope.mp4")  # kept, so that it is reported as unreadable


def test_predict_reads_an_s3_prefix(videos, weights, s3_bucket, tmp_path):
    import fsspec
    fs = fsspec.filesystem("s3")
    for ext in ("webm", "avi"):
        fs.put(str(videos / f"red.{ext}"), f"{s3_bucket}/in/red.{ext}")
    out = tmp_path / "pred.json"
    rc = predict.main([f"s3://{s3_bucket}/in", "--labels", ", ".join(LABELS), "--weights", str(weights),
                       "--json", str(out), "--no-progress"])
    assert rc == 0
    names = [p["video"] for p in json.loads(out.read_text())["predictions"]]
    assert names == [f"s3://{s3_bucket}/in/red.avi", f"s3://{s3_bucket}/in/red.webm"]


def test_labels_from_a_classes_file(videos, weights, tmp_path):
    from shards.manifest import classes_table, write_table
    from shards.storage import Store
    write_table(Store(str(tmp_path)), "classes.parquet", classes_table(["RedCircleMovingLeft", "blue_square"]))
    out = tmp_path / "pred.json"
    assert predict.main([str(videos / "red.webm"), "--classes", str(tmp_path / "classes.parquet"), "--weights",
                         str(weights), "--json", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["labels"] == ["RedCircleMovingLeft", "blue_square"]
    assert {t["label"] for t in result["predictions"][0]["top_k"]} == set(result["labels"])


def test_bad_arguments_exit_2(videos, weights, tmp_path, capsys):
    assert predict.main([str(videos), "--labels", " , ", "--weights", str(weights)]) == 2
    assert predict.main([str(videos), "--labels", "a, b", "--weights", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err
