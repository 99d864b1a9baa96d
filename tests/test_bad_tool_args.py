"""Bad arguments to the model-side tools (predict, class_similarity, pretrain_clip) end in one clear line with exit
status 2 before any model loads; a URL predict cannot read fails at once, never after a retry budget."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st
from tool_module import load_tool

from model.inputs import InputError, at_least, positive_float, positive_int, read_text_lines, video_sources
from shards.cli import run

predict = load_tool("predict")
PROPERTY = settings(max_examples=200, deadline=None, database=None)  # nothing written into the repository


@pytest.fixture
def video(tmp_path) -> Path:
    """A file with a video name (the argument checks run before any video is opened)."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00" * 64)
    return path


def predict_error(capsys, argv: list[str]) -> str:
    """Run predict as its entry point does; it must exit 2 with exactly one error line and no traceback."""
    assert run(predict.main, argv, prog="predict") == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


# ------------------------------------------------------------------------------------------------- sources
@pytest.mark.parametrize("url", ["http://127.0.0.1:9/clip.mp4", "https://example.com/videos/", "gs://bucket/a.mp4",
                                 "ftp://host/a.avi"])
def test_a_url_predict_cannot_read_fails_at_once(capsys, video, url):
    tic = time.monotonic()
    line = predict_error(capsys, [str(video), url, "--labels", "a, b"])
    assert time.monotonic() - tic < 10  # not a storage retry budget (600 s)
    scheme = url.split("://")[0]
    assert f"{url}: frostline reads local files and s3:// URLs, not {scheme}://" in line


def test_an_s3_url_is_read_through_storage_and_a_missing_object_is_reported(s3_bucket, tiny_clip_file, capsys):
    url = f"s3://{s3_bucket}/in/missing.mp4"
    tic = time.monotonic()
    rc = run(predict.main, [url, "--labels", "a, b", "--weights", str(tiny_clip_file), "--no-progress"],
             prog="predict")
    assert rc == 1 and time.monotonic() - tic < 120  # a missing object is not retried
    assert f"FAILED {url}" in capsys.readouterr().err


@pytest.mark.parametrize("name,message", [
    ("nope.mp4", "nope.mp4: no such file"),
    ("*.webm", "*.webm: no such file"),          # a glob that matches nothing
    ("empty_folder", "empty_folder: a folder without video files"),
])
def test_names_that_hold_no_video_are_refused_before_the_model_loads(tmp_path, capsys, video, name, message):
    (tmp_path / "empty_folder").mkdir()
    line = predict_error(capsys, [str(video), str(tmp_path / name), "--labels", "a, b", "--weights",
                                  str(tmp_path / "weights-not-needed-yet.pt")])
    assert message in line


# --------------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("argv,message", [
    (["--top-k", "0"], "argument --top-k: must be at least 1, got '0'"),
    (["--top-k", "-3"], "argument --top-k: must be at least 1, got '-3'"),
    (["--views", "0"], "argument --views: must be at least 1, got '0'"),
    (["--batch-size", "-1"], "argument --batch-size: must be at least 1, got '-1'"),
    (["--top-k", "five"], "argument --top-k: expected a whole number, got 'five'"),
])
def test_bad_counts_are_refused_by_name(capsys, video, argv, message):
    with pytest.raises(SystemExit) as e:
        predict.main([str(video), "--labels", "a, b", *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- labels
def test_labels_that_cannot_rank_anything_are_refused(capsys, video, tmp_path):
    assert "--labels: 0 label(s)" in predict_error(capsys, [str(video), "--labels", " , "])
    assert "--labels: 1 label(s); give at least two" in predict_error(capsys, [str(video), "--labels", "juggling"])
    assert "labels repeat: ['a']" in predict_error(capsys, [str(video), "--labels", "a, b, a"])
    empty = tmp_path / "labels.txt"
    empty.write_text("\n\n")
    assert f"{empty}: 0 label(s)" in predict_error(capsys, [str(video), "--labels-file", str(empty)])


@pytest.mark.parametrize("encoding,message", [
    ("utf-16", "not UTF-8 text: byte 0xff at offset 0 (it looks like UTF-16: save it as UTF-8)"),
    ("latin-1", "not UTF-8 text: byte 0xe9 at offset 3"),
])
def test_a_labels_file_in_another_encoding_is_named(capsys, video, tmp_path, encoding, message):
    f = tmp_path / "labels.txt"
    f.write_bytes("caf\u00e9 au lait\nriding a bike\n".encode(encoding))
    assert f"{f}: {message}" in predict_error(capsys, [str(video), "--labels-file", str(f)])


def test_a_labels_file_with_a_byte_order_mark_is_read_as_written(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_bytes("\ufeffjuggling balls\r\nriding a bike\n".encode("utf-8"))
    assert read_text_lines(str(f)) == ["juggling balls", "riding a bike"]


def test_a_missing_labels_file_is_named(capsys, video, tmp_path):
    line = predict_error(capsys, [str(video), "--labels-file", str(tmp_path / "none.txt")])
    assert "none.txt" in line


def test_a_classes_file_without_class_names_or_not_parquet_is_named(capsys, video, tmp_path):
    f = tmp_path / "classes.parquet"
    pq.write_table(pa.table({"label": [0, 1], "name": ["a", "b"]}), f)
    assert f"{f}: a classes file needs the columns label and class_name, has label, name" in predict_error(
        capsys, [str(video), "--classes", str(f)])
    f.write_text("label,class_name\n0,a\n")
    assert f"{f}: not a readable Parquet file" in predict_error(capsys, [str(video), "--classes", str(f)])


def test_json_into_a_missing_folder_is_refused_before_the_work(capsys, video, tmp_path):
    out = tmp_path / "no" / "pred.json"
    assert f"{out}: the folder {out.parent} does not exist" in predict_error(
        capsys, [str(video), "--labels", "a, b", "--json", str(out)])


def test_unreadable_weights_are_named(capsys, video, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not weights")
    assert str(bad) in predict_error(capsys, [str(video), "--labels", "a, b", "--weights", str(bad)])


# ------------------------------------------------------------------------------------------ the other tools
@pytest.mark.parametrize("argv,message", [
    (["--steps", "0"], "argument --steps: must be at least 1"),
    (["--lr", "nan"], "argument --lr: must be a finite number above 0, got 'nan'"),
    (["--lr=-1e-3"], "argument --lr: must be a finite number above 0"),
    (["--threads", "0"], "argument --threads: must be at least 1"),
    (["--frames", "3"], "argument --frames: must be at least 8"),
    (["--seed", "-1"], "argument --seed: must be at least 0"),
    (["--batch", "6"], "--batch-size 6 must be a multiple of 4"),
    (["--batch", "128", "--images", "64"], "at most --images 64"),
])
def test_pretrain_clip_refuses_values_it_cannot_train_with(tmp_path, capsys, argv, message):
    pretrain = load_tool("pretrain_clip")
    with pytest.raises(SystemExit) as e:
        pretrain.main(["--out", str(tmp_path / "w.pt"), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "w.pt").exists()


def test_class_similarity_refuses_a_training_set_of_zero(tmp_path, capsys):
    sim = load_tool("class_similarity")
    with pytest.raises(SystemExit) as e:
        sim.main(["--splits", str(tmp_path), "--train-set", "0"])
    assert e.value.code == 2 and "argument --train-set: must be at least 1" in capsys.readouterr().err


def test_class_similarity_names_a_classes_file_without_class_names(tmp_path, tiny_clip_file, capsys):
    sim = load_tool("class_similarity")
    f = tmp_path / "classes_a.parquet"
    pq.write_table(pa.table({"label": [0, 1], "name": ["a", "b"]}), f)
    assert run(sim.main, ["--train", str(f), "--eval", str(f), "--weights", str(tiny_clip_file)],
               prog="class_similarity") == 2
    assert f"{f}: classes need the columns label and class_name" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ properties
@PROPERTY
@given(st.one_of(st.text(max_size=12), st.integers(-10**6, 10**6).map(str),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr)))
def test_the_command_line_number_types_give_a_value_or_an_argparse_error(text):
    for parse, ok in ((positive_int, lambda v: v >= 1), (at_least(0, 10), lambda v: 0 <= v <= 10),
                      (positive_float, lambda v: v > 0 and v != float("inf"))):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as e:
            assert repr(text) in str(e)
        else:
            assert ok(value)


@PROPERTY
@given(st.lists(st.text(max_size=16).filter(lambda s: "s3://" not in s.lower()), min_size=1, max_size=3))
def test_any_video_names_give_videos_or_an_input_error(tmp_path_factory, names):
    root = tmp_path_factory.getbasetemp()
    try:
        videos = video_sources([str(root / n) if n and "://" not in n else n for n in names])
    except InputError as e:
        assert str(e)
    else:
        assert all(os.path.exists(v) for v in videos)


def test_class_similarity_refuses_a_plot_into_a_missing_folder(tmp_path, capsys):
    sim = load_tool("class_similarity")
    plot = tmp_path / "no" / "fig.png"
    assert run(sim.main, ["--splits", str(tmp_path), "--plot", str(plot)], prog="class_similarity") == 2
    assert f"{plot}: the folder {plot.parent} does not exist" in capsys.readouterr().err
