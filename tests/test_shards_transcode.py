"""The stored stream: size rule, constant frame rate from any source rate, rotation, copy, clear reasons."""
import io

import av
import numpy as np
import pytest

from shards.generated.synthetic import render, write_audio_only, write_broken, write_video
from shards.transcode import DEFAULT_KEYFRAME_INTERVAL, EncodeOptions, VideoError, target_size, transcode
from shards_checks import probe


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


def _keyframes(data: bytes) -> list[int]:
    with av.open(io.BytesIO(data)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
    return [i for i, p in enumerate(packets) if p.is_keyframe]


@pytest.mark.parametrize("codec", ["vp9", "h264", "copy"])
def test_fragment_table_matches_keyframe_packets(tmp_path, codec):
    """The stored MP4 is fragmented at every keyframe; the table names each fragment's moof box and first frame,
    and `stream[:first moof] + stream[moof_k:]` decodes to the frames from fragment k's first frame on."""
    path = str(tmp_path / "v.avi")
    write_video(path, render(1, "x", np.random.default_rng(3), 64, 48, 70), fps=30)
    if codec == "copy":                      # keep a VP9 stream with a keyframe every 8 frames as it is
        vp9, _ = transcode(path, EncodeOptions(codec="vp9", keyframe_interval=8))
        path = str(tmp_path / "vp9.mp4")
        with open(path, "wb") as f:
            f.write(vp9)
    data, info = transcode(path, EncodeOptions(codec=codec))
    keys = _keyframes(data)
    assert info.fragment_frames == keys
    assert keys == list(range(0, info.num_frames, 8 if codec == "copy" else DEFAULT_KEYFRAME_INTERVAL))
    assert len(info.fragment_offsets) == len(keys) >= 2
    assert all(data[o + 4:o + 8] == b"moof" for o in info.fragment_offsets)
    full = _frames(data)
    assert len(full) == info.num_frames
    init = info.fragment_offsets[0]
    for offset, first in zip(info.fragment_offsets, info.fragment_frames):
        cut = _frames(data[:init] + data[offset:])
        assert len(cut) == info.num_frames - first
        assert np.array_equal(cut[0], full[first]) and np.array_equal(cut[-1], full[-1])
