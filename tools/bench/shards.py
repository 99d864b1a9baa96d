#!/usr/bin/env python
"""Benchmark the stored-stream settings: codec x keyframe interval.

For each setting it prints transcoding videos/s per core (one process, one encoder thread), bytes
per video, and the time to decode one training clip (8 frames, stride 16, random start) from the
stored stream with PyAV and, for VP9, with DALI's CPU decoder on the stream cut at the fragment before the
clip, as the pipeline does. Test videos are generated (moving
shapes over a moving noise texture), so absolute bytes are lower than for real footage.

    python tools/bench/shards.py --videos 4 --seconds 10 --size 340x256 --intervals 8,16,32
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shards.cli import setup_logging, tool_parser  # noqa: E402
from shards.generated.synthetic import render, write_video  # noqa: E402
from shards.transcode import EncodeOptions, fragment_table, quiet_ffmpeg, transcode  # noqa: E402


def make_sources(folder: str, n: int, width: int, height: int, frames: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        clip = render(i, f"bench{i}", rng, width, height, frames).astype(np.int16)
        grain = rng.integers(-12, 13, size=(frames, height, width, 1), dtype=np.int16)  # camera-like noise
        clip = np.clip(clip + grain, 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"src{i}.avi")
        write_video(path, clip, 30, codec="mpeg4")
        paths.append(path)
    return paths


def pyav_clip(video: bytes, starts: list[int], keyint: int, num: int = 8, stride: int = 16) -> float:
    """Mean seconds to decode `num` frames at `stride` from each start, seeking whenever a keyframe lies
    between the last decoded frame and the next target (what a random-access reader can do)."""
    import av

    total = 0.0
    for start in starts:
        t0 = time.perf_counter()
        with av.open(io.BytesIO(video)) as c:
            s = c.streams.video[0]
            s.thread_count = 1
            rate = float(s.average_rate)
            targets = [start + i * stride for i in range(num)]
            got = 0
            pos = None   # index of the last decoded frame
            gen = None
            for t in targets:
                if pos is None or t < pos or t - t % keyint > pos:   # jump to the keyframe before t
                    c.seek(int(t / rate / s.time_base), stream=s, backward=True, any_frame=False)
                    gen = c.decode(s)
                    pos = None
                for frame in gen:
                    pos = round(frame.pts * s.time_base * rate)
                    if pos >= t:
                        frame.to_ndarray(format="rgb24")
                        got += 1
                        break
            assert got == num, f"decoded {got} of {num} frames"
        total += time.perf_counter() - t0
    return total / len(starts)


def cut_at(video: bytes, start: int) -> tuple[bytes, int]:
    """The stream as the pipeline hands it to DALI: init segment + the bytes from the fragment at or before
    `start` (docs/benchmarks/2026-12-cpu.md, 'Why the streams are cut'); returns (bytes, start within them)."""
    table = fragment_table(video)
    offsets, frames = table["fragment_offsets"], table["fragment_frames"]
    if not offsets:
        return video, start
    k = max(i for i, f in enumerate(frames) if f <= start)
    return video[:offsets[0]] + video[offsets[k]:], start - frames[k]


def dali_clip(videos: list[bytes], starts: list[list[int]], num: int = 8, stride: int = 16) -> float:
    """Mean seconds per clip for DALI's CPU decoder (batch of 1, one thread), after a warm-up."""
    from nvidia.dali import fn, pipeline_def, types

    items = [cut_at(v, s) for v, ss in zip(videos, starts) for s in ss]
    it = iter(items * 2)

    def source():
        v, s = next(it)
        return [np.frombuffer(v, np.uint8)], [np.array(s, np.int32)]

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1, exec_async=False,
                  exec_pipelined=False)
    def pipe():
        data, start = fn.external_source(source=source, num_outputs=2, dtype=[types.UINT8, types.INT32])
        return fn.decoders.video(data, device="cpu", start_frame=start, sequence_length=num, stride=stride,
                                 pad_mode="edge")

    p = pipe()
    p.build()
    for _ in range(min(3, len(items))):
        p.run()
    t0 = time.perf_counter()
    for _ in range(len(items)):
        (out,) = p.run()
        assert out[0].shape()[0] == num
    return (time.perf_counter() - t0) / len(items)


def main(argv=None) -> int:
    ap = tool_parser(__doc__)
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="340x256", help="source WxH (the short side is kept at <= 256)")
    ap.add_argument("--intervals", default="8,16,32", help="keyframe intervals to compare")
    ap.add_argument("--codecs", default="vp9,h264")
    ap.add_argument("--clips", type=int, default=6, help="random clips per video for the decode timings")
    args = ap.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    quiet_ffmpeg()
    width, height = (int(x) for x in args.size.lower().split("x"))
    frames = int(args.seconds * 30)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        sources = make_sources(tmp, args.videos, width, height, frames)
        starts = [sorted(rng.integers(0, max(1, frames - 7 * 16), args.clips).tolist()) for _ in sources]
        print(f"{args.videos} videos, {width}x{height}, {frames} frames at 30 fps; clip = 8 frames, stride 16; "
              f"one core per measurement")
        print(f"{'codec':6} {'keyint':>6} {'videos/s/core':>14} {'KiB/video':>10} {'PyAV ms/clip':>13} "
              f"{'DALI-CPU ms/clip':>17}")
        for codec in args.codecs.split(","):
            for g in (int(x) for x in args.intervals.split(",")):
                opts = EncodeOptions(codec=codec, keyframe_interval=g)
                t0 = time.perf_counter()
                encoded = [transcode(p, opts)[0] for p in sources]
                rate = len(sources) / (time.perf_counter() - t0)
                size = np.mean([len(v) for v in encoded]) / 1024
                pyav = np.mean([pyav_clip(v, s, g) for v, s in zip(encoded, starts)]) * 1000
                dali = f"{dali_clip(encoded, starts) * 1000:17.1f}" if codec == "vp9" else f"{'n/a (GPU only)':>17}"
                print(f"{codec:6} {g:6d} {rate:14.2f} {size:10.1f} {pyav:13.1f} {dali}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
