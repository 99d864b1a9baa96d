"""Probe a video and write its normalised stream: codec, constant frame rate, short side, keyframe interval.

The stored stream is what the training pipeline decodes, so it is normalised once here: constant fps
(frames are picked by presentation time, as FFmpeg's `fps` filter does), short side at most
`short_side` with the aspect ratio kept (never upscaled), `yuv420p`, no audio, a keyframe every
`keyframe_interval` frames so a clip anywhere in the video decodes from a near keyframe.
Everything that goes wrong with one video raises `VideoError` with a reason for the rejects table.
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import asdict, dataclass
from fractions import Fraction

import av
import av.logging
import numpy as np

CODECS = ("vp9", "h264", "copy")
# A keyframe every 4 frames: the loader gathers, for each sampled frame, the frames from the keyframe before it
# (`shards.fmp4`), about T * (1 + (k - 1) / 2) = 20 decoded frames for an 8-frame clip, at 2.5x the bytes of
# k = 16 (docs/benchmarks/2026-12-cpu.md, "Decoding per keyframe interval": the table it was chosen from).
DEFAULT_KEYFRAME_INTERVAL = 4
# Fragmented MP4: every fragment (moof + mdat) starts at a keyframe, and `init + stream[moof_k:]` is itself a valid
# MP4 whose first frame is fragment k's first frame; the pipeline uses that to skip the frames before a clip.
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
# Streams `--codec copy` keeps as they are: DALI decodes them (VP9 on CPU and GPU, the rest on GPU).
COPYABLE = ("vp9", "h264", "hevc", "av1")


class VideoError(Exception):
    """One video cannot become a sample; `str(e)` is the reject reason ("decode error at frame 17: ...")."""


class OptionsError(ValueError):
    """Encode options that cannot be used (an unknown codec, a non-positive frame rate...)."""


@dataclass(frozen=True)
class EncodeOptions:
    codec: str = "vp9"
    fps: float = 30.0
    short_side: int = 256
    keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL
    crf: int | None = None      # None: 32 for VP9, 23 for H.264
    speed: int = 8              # libvpx cpu-used (realtime deadline); ignored by H.264
    threads: int = 1            # per video: parallelism comes from converting several videos at once

    def __post_init__(self):
        if self.codec not in CODECS:
            raise OptionsError(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.fps <= 0 or self.short_side < 2 or self.keyframe_interval < 1:
            raise OptionsError(f"invalid encode options {self}")


@dataclass
class StreamInfo:
    num_frames: int
    fps: float
    source_fps: float
    width: int
    height: int
    duration_s: float
    codec: str
    bytes: int
    sha256: str
    fragment_offsets: list[int]     # byte offset of each top-level `moof` box in the stored stream
    fragment_frames: list[int]      # index of each fragment's first frame

    def as_dict(self) -> dict:
        return asdict(self)


def quiet_ffmpeg() -> None:
    """Broken inputs make FFmpeg print pages of warnings; the reasons end up in the rejects table instead."""
    av.logging.set_level(av.logging.PANIC)


def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scale so the short side is at most `short_side`, keep the aspect ratio, round to even sizes (yuv420p)."""
    short = min(width, height)
    scale = min(1.0, short_side / short)
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    if scale == 1.0:  # never upscale an odd size: round down instead
        w, h = max(2, width - width % 2), max(2, height - height % 2)
    return w, h


def _open(path: str):
    if path is None or not os.path.exists(path):
        raise VideoError("missing")
    if os.path.getsize(path) == 0:
        raise VideoError("unreadable container: empty file")
    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as e:  # FFmpeg raises many error types for a bad header
        raise VideoError(f"unreadable container: {_short(e, path)}") from None
    if not container.streams.video:
        container.close()
        raise VideoError("no video stream")
    return container


def _short(e: Exception, path: str | None = None) -> str:
    """A one-line error message without the file name (the rejects table has it in `source_path`)."""
    text = str(e).replace("\n", " ")
    if path:
        text = text.replace(f": '{path}'", "").replace(path, "<file>")
    return (text[:160] + "...") if len(text) > 160 else text


def _stream_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return None


def _encoder(out, opts: EncodeOptions, rate: Fraction, width: int, height: int):
    g = str(opts.keyframe_interval)
    if opts.codec == "vp9":
        crf = 32 if opts.crf is None else opts.crf
        options = {"deadline": "realtime", "cpu-used": str(opts.speed), "row-mt": "1", "lag-in-frames": "0",
                   "g": g, "keyint_min": g, "crf": str(crf), "b": "0"}
        stream = out.add_stream("libvpx-vp9", rate=rate, options=options)
    else:
        crf = 23 if opts.crf is None else opts.crf
        options = {"preset": "veryfast", "crf": str(crf), "g": g, "keyint_min": g, "sc_threshold": "0",
                   "bf": "0", "x264-params": f"keyint={g}:min-keyint={g}:scenecut=0"}
        stream = out.add_stream("libx264", rate=rate, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.thread_count = opts.threads
    stream.codec_context.time_base = Fraction(1) / rate
    return stream


def _upright(frame):
    """Apply the display rotation of phone videos (coded landscape, shown portrait): the stored stream has none."""
    quarter = round(frame.rotation / 90) % 4 if frame.rotation else 0
    if not quarter:
        return frame
    pixels = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), k=quarter))
    return av.VideoFrame.from_ndarray(pixels, format="rgb24")


def _frame_time(frame, stream, index: int, src_fps: float | None) -> Fraction:
    if frame.pts is not None and frame.time_base is not None:
        return Fraction(frame.pts) * Fraction(frame.time_base)
    if frame.pts is not None and stream.time_base is not None:
        return Fraction(frame.pts) * Fraction(stream.time_base)
    return Fraction(index) / Fraction(src_fps or 30).limit_denominator(1001)


def transcode(path: str, opts: EncodeOptions = EncodeOptions()) -> tuple[bytes, StreamInfo]:
    """Decode `path` and encode its normalised stream into an MP4; returns (mp4 bytes, info)."""
    if opts.codec == "copy":
        with _open(path) as c:
            name = c.streams.video[0].codec_context.name
        if name in COPYABLE:
            return _remux(path)
        opts = EncodeOptions(**{**asdict(opts), "codec": "vp9"})  # not decodable as is: store VP9
    container = _open(path)
    try:
        return _transcode(container, opts)
    finally:
        container.close()


def _transcode(container, opts: EncodeOptions) -> tuple[bytes, StreamInfo]:
    src = container.streams.video[0]
    src.thread_count = opts.threads
    src_fps = _stream_fps(src)
    rate = Fraction(opts.fps).limit_denominator(1001)
    step = Fraction(1) / rate
    half = Fraction(1, 2)
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mp4", options=FRAGMENTED)
    stream = None
    n_in = n_out = 0
    t0 = prev = prev_t = None

    def emit(frame, until: Fraction):
        """Write `frame` into every output slot whose midpoint comes before `until` (the next frame's time).

        Midpoints make the choice robust to timestamps rounded to milliseconds (WebM, MKV).
        """
        nonlocal stream, n_out
        if (n_out + half) * step < until:
            frame = _upright(frame)
        while (n_out + half) * step < until:
            if stream is None:
                w, h = target_size(frame.width, frame.height, opts.short_side)
                stream = _encoder(out, opts, rate, w, h)
            img = frame.reformat(width=stream.width, height=stream.height, format="yuv420p",
                                 interpolation="AREA")
            img.pts, img.time_base = n_out, step
            img.pict_type = 0  # drop the source's I-frame flags: keyframes come only from keyframe_interval
            for packet in stream.encode(img):
                out.mux(packet)
            n_out += 1

    try:
        try:
            for frame in container.decode(src):
                t = _frame_time(frame, src, n_in, src_fps)
                if t0 is None:
                    t0 = t
                t -= t0
                n_in += 1
                if prev is not None:
                    if t <= prev_t:     # duplicate or out-of-order timestamp: keep the earlier frame
                        continue
                    emit(prev, t)
                prev, prev_t = frame, t
        except Exception as e:
            raise VideoError(f"decode error at frame {n_in}: {_short(e)}") from None
        if prev is None:
            raise VideoError("decode error at frame 0: no frames decoded")
        last = Fraction(1) / Fraction(src_fps).limit_denominator(1001) if src_fps else step
        emit(prev, prev_t + last)
        if stream is None:      # everything fell between two output slots (a blip at a very high rate)
            emit(prev, step)
        for packet in stream.encode():
            out.mux(packet)
        out.close()
    except VideoError:
        _close_quietly(out)
        raise
    data = buf.getvalue()
    info = StreamInfo(num_frames=n_out, fps=float(rate), source_fps=float(src_fps or 0.0),
                      width=stream.width, height=stream.height, duration_s=float(n_out * step),
                      codec=opts.codec, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                      **fragment_table(data))
    return data, info


def _close_quietly(out) -> None:
    """Close an output that is being abandoned (it may have no stream yet, which FFmpeg complains about)."""
    try:
        out.close()
    except Exception:
        pass


def _remux(path: str) -> tuple[bytes, StreamInfo]:
    """Keep the original video stream (no audio) in an MP4; decode it once to count frames and catch errors."""
    buf = io.BytesIO()
    with _open(path) as c:
        src = c.streams.video[0]
        src_fps = _stream_fps(src) or 0.0
        out = av.open(buf, "w", format="mp4", options=FRAGMENTED)
        dst = out.add_stream_from_template(src)
        n = 0
        try:
            for packet in c.demux(src):
                if packet.dts is None and packet.pts is None:
                    for _ in packet.decode():   # flush packet
                        n += 1
                    continue
                n += len(packet.decode())
                packet.stream = dst
                out.mux(packet)
        except Exception as e:
            _close_quietly(out)
            raise VideoError(f"decode error at frame {n}: {_short(e)}") from None
        if n == 0:
            _close_quietly(out)
            raise VideoError("decode error at frame 0: no frames decoded")
        width, height, codec = src.codec_context.width, src.codec_context.height, src.codec_context.name
        out.close()
    data = buf.getvalue()
    info = StreamInfo(num_frames=n, fps=src_fps, source_fps=src_fps, width=width, height=height,
                      duration_s=n / src_fps if src_fps else 0.0, codec=codec, bytes=len(data),
                      sha256=hashlib.sha256(data).hexdigest(), **fragment_table(data))
    return data, info


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, offset, size) of the ISO-BMFF boxes laid out one after another in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:                       # 64-bit size follows the type
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:                     # extends to the end
            size = end - pos
        if size < header or pos + size > end:
            raise VideoError(f"broken MP4 box {kind!r} at byte {pos}")
        yield kind.decode("latin-1"), pos, size, header
        pos += size


def fragment_table(data: bytes) -> dict:
    """The fragment table of a fragmented MP4: each top-level `moof`'s byte offset and the index of its first frame
    (frames counted from the `trun` sample counts). Empty lists for an MP4 that is not fragmented."""
    offsets, frames, _ = stream_fragments(data)
    return {"fragment_offsets": offsets, "fragment_frames": frames}


def stream_fragments(data) -> tuple[list[int], list[int], int]:
    """(moof offsets, first frame of each fragment, frames in all fragments) of a fragmented MP4."""
    offsets, frames = [], []
    count = 0
    for kind, pos, size, header in _boxes(data):
        if kind != "moof":
            continue
        offsets.append(pos)
        frames.append(count)
        for k, p, s, h in _boxes(data, pos + header, pos + size):
            if k == "traf":
                for k2, p2, s2, h2 in _boxes(data, p + h, p + s):
                    if k2 == "trun":        # full box: version + flags (4 bytes), then sample_count
                        count += struct.unpack_from(">I", data, p2 + h2 + 4)[0]
    return offsets, frames, count
