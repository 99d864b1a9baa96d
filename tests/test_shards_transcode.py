"""The stored stream: size rule, constant frame rate from any source rate, rotation, copy, clear reasons."""
import io

import av
import numpy as np
import pytest

from shards.synthetic import render, write_audio_only, write_broken, write_video
from shards.transcode import EncodeOptions, VideoError, probe, target_size, transcode


def _frames(data: bytes) -> list:
    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_target_size_keeps_aspect_never_upscales():
    assert target_size(1920, 1080, 256) == (456, 256)
    assert target_size(1080, 1920, 256) == (256, 456)
    assert target_size(340, 256, 256) == (340, 256)
    assert target_size(64, 48, 256) == (64, 48)
    assert target_size(65, 49, 256) == (64, 48)          # odd sizes round down, never up
    assert target_size(400, 300, 100) == (134, 100)


@pytest.mark.parametrize("src_fps,n,expected", [(25, 50, 60), (30, 45, 45), (60, 60, 30), (12, 24, 60)])
def test_constant_output_rate(tmp_path, src_fps, n, expected):
    path = str(tmp_path / "v.mp4")
    write_video(path, render(0, "x", np.random.default_rng(0), 64, 48, n), fps=src_fps)
    data, info = transcode(path, EncodeOptions())
    assert info.num_frames == expected == len(_frames(data))
    assert info.source_fps == src_fps and info.fps == 30.0 and info.duration_s == pytest.approx(expected / 30)


def test_frames_are_picked_by_time(tmp_path):
    """A 10 fps source of distinct grey levels becomes 3 identical copies of each level at 30 fps."""
    levels = np.repeat(np.arange(0, 250, 25, dtype=np.uint8), 48 * 64 * 3).reshape(10, 48, 64, 3)
    path = str(tmp_path / "steps.mp4")
    write_video(path, levels, fps=10)
    data, info = transcode(path, EncodeOptions(crf=10))
    means = [round(float(f.mean()) / 25) for f in _frames(data)]
    assert means == [i for i in range(10) for _ in range(3)]


def test_phone_rotation_is_applied(tmp_path):
    portrait = np.zeros((4, 64, 48, 3), np.uint8)
    portrait[:, :16] = 255                               # white band at the top of the upright picture
    path = str(tmp_path / "phone.mp4")
    write_video(path, portrait, rotation=90)
    assert probe(path)["width"] == 64                    # coded landscape
    data, info = transcode(path, EncodeOptions(crf=10))
    (w, h), first = (info.width, info.height), _frames(data)[0]
    assert (w, h) == (48, 64)
    assert first[:12].mean() > 200 and first[20:].mean() < 50


def test_single_frame_and_audio(tmp_path):
    path = str(tmp_path / "one.mkv")
    write_video(path, render(1, "x", np.random.default_rng(0), 64, 48, 1), audio=True)
    assert probe(path)["audio"] == 1
    data, info = transcode(path, EncodeOptions(codec="h264"))
    assert info.num_frames == 1 and info.codec == "h264"
    with av.open(io.BytesIO(data)) as c:
        assert not c.streams.audio


def test_copy_keeps_h264(tmp_path):
    path = str(tmp_path / "v.mp4")
    write_video(path, render(2, "x", np.random.default_rng(0), 64, 48, 20), fps=25, audio=True)
    data, info = transcode(path, EncodeOptions(codec="copy"))
    assert (info.codec, info.fps, info.num_frames) == ("h264", 25.0, 20)
    with av.open(io.BytesIO(data)) as c:
        assert not c.streams.audio and c.streams.video[0].codec_context.name == "h264"


def test_reject_reasons(tmp_path):
    cases = {"missing": None, "unreadable container: empty file": "empty.avi",
             "unreadable container: ": "broken.avi", "no video stream": "sound.mp4"}
    (tmp_path / "empty.avi").write_bytes(b"")
    write_broken(str(tmp_path / "broken.avi"))
    write_audio_only(str(tmp_path / "sound.mp4"))
    for reason, name in cases.items():
        with pytest.raises(VideoError) as e:
            transcode(str(tmp_path / name) if name else str(tmp_path / "nope.avi"))
        assert str(e.value).startswith(reason) and str(tmp_path) not in str(e.value)
    with pytest.raises(ValueError, match="codec"):
        EncodeOptions(codec="av1")
