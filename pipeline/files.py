"""Evaluation clips from arbitrary video files (local, glob, folder or s3://), for inference on users' videos.

A user's video is not in a shard, so the shard graph does not apply; everything else is evaluation's own: the
frame indices of `pipeline.sampling` in test mode (V temporal views of T frames `stride` apart), the short side
resized to the crop size, the centre crop, CLIP's normalisation.

Decoding: DALI where its decoder reads the codec on the chosen device (CPU: VP8, VP9, MJPEG; GPU/NVDEC: also
H.264, HEVC, AV1), PyAV for everything else FFmpeg reads (MPEG-4 part 2 in AVI, ...). The PyAV path resamples
as the graph's resize does (bilinear from the crop's source square, no antialiasing, uint8 pixels), so on the same
decoded frames both give the same clip (tests/test_predict.py); the decoders' own YUV->RGB conversions differ a
little (mean 0.03 in normalised units on a generated VP9 video). A file that cannot be read or decoded raises `VideoError` naming it.
"""
from __future__ import annotations

import glob
import io
import os
from dataclasses import dataclass

import av
import numpy as np
import torch
import torch.nn.functional as F

from shards import storage
from shards.sources import VIDEO_EXTENSIONS
from shards.storage import Store, is_remote

from .sampling import CLIP_MEAN, CLIP_STD, clip_indices, view_position

DALI_CODECS = {"cpu": {"vp8", "vp9", "mjpeg"}, "gpu": {"vp8", "vp9", "mjpeg", "h264", "hevc", "av1"}}


class VideoError(RuntimeError):
    """A video that cannot be read or decoded (the message starts with its name)."""


def expand_inputs(items: list[str]) -> list[str]:
    """Files, globs, folders (searched recursively for video extensions) and s3:// URLs (a file, or a prefix that
    is listed the same way), in the order given; each folder's videos sorted. A name that matches nothing is
    kept, so that it is reported as unreadable rather than silently skipped."""
    out: list[str] = []
    for item in items:
        if is_remote(item):
            if item.lower().endswith(VIDEO_EXTENSIONS):
                out.append(item)
                continue
            store = Store(item)
            found = sorted(f for f in store.fs.find(store.root) if f.lower().endswith(VIDEO_EXTENSIONS))
            out.extend(f"{item.split('://', 1)[0]}://{f}" for f in found) if found else out.append(item)
        elif os.path.isdir(item):
            out.extend(sorted(os.path.join(root, f) for root, _, files in os.walk(item) for f in files
                              if f.lower().endswith(VIDEO_EXTENSIONS)))
        elif any(c in item for c in "*?[") and not os.path.exists(item):
            matches = sorted(glob.glob(item, recursive=True))
            out.extend(matches if matches else [item])
        else:
            out.append(item)
    return out


def read_bytes(url: str) -> bytes:
    try:
        return storage.read_bytes(url)
    except Exception as e:
        raise VideoError(f"{url}: cannot read ({e})") from e


@dataclass
class Probe:
    codec: str
    num_frames: int
    width: int
    height: int


def probe(data: bytes, name: str) -> Probe:
    """Codec, frame count and size. The count comes from the container, else from counting packets (no decoding)."""
    try:
        with av.open(io.BytesIO(data)) as c:
            if not c.streams.video:
                raise VideoError(f"{name}: no video stream")
            s = c.streams.video[0]
            codec, w, h, n = s.codec_context.name, s.codec_context.width, s.codec_context.height, s.frames
            if not n:
                n = sum(1 for p in c.demux(s) if p.size)
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(f"{name}: not a readable video ({e})") from e
    if n <= 0 or not w or not h:
        raise VideoError(f"{name}: no frames")
    return Probe(codec, int(n), int(w), int(h))


def view_indices(num_frames: int, frames: int, stride: int, views: int) -> np.ndarray:
    """int64 [V*T]: evaluation's dense test-mode indices for each temporal view of a video with num_frames."""
    pos = view_position(np.arange(views), views, "dense")
    return np.concatenate([clip_indices(num_frames, frames, "dense", stride, np.full(frames, p, np.float32),
                                        train=False) for p in pos])


def decode_pyav(data: bytes, indices: np.ndarray, name: str) -> np.ndarray:
    """uint8 [len(indices), H, W, 3]: the frames at `indices` in decoding order (past the end: the last frame)."""
    wanted = set(int(i) for i in indices)
    last = int(indices.max())
    frames: dict[int, np.ndarray] = {}
    try:
        with av.open(io.BytesIO(data)) as c:
            for n, frame in enumerate(c.decode(c.streams.video[0])):
                if n in wanted:
                    frames[n] = frame.to_ndarray(format="rgb24")
                if n >= last:
                    break
    except Exception as e:
        if not frames:
            raise VideoError(f"{name}: cannot decode ({e})") from e
    if not frames:
        raise VideoError(f"{name}: no frames decoded")
    have = np.array(sorted(frames))
    pick = have[np.clip(np.searchsorted(have, indices, side="right") - 1, 0, len(have) - 1)]
    return np.stack([frames[int(i)] for i in pick])


def centre_crop_normalise(frames: torch.Tensor, crop: int) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, crop, crop]: the graph's test transform (short side to `crop`, centre
    crop) as one bilinear resampling of the centre square of side min(H, W), then CLIP's normalisation."""
    n, h, w, _ = frames.shape
    side = min(h, w)
    y0, x0 = (h - side) / 2, (w - side) / 2
    centres = (torch.arange(crop, dtype=torch.float64) + 0.5) * side / crop       # in source pixels
    gy = (2 * (y0 + centres) / h - 1).float()
    gx = (2 * (x0 + centres) / w - 1).float()
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)        # [crop, crop, (x, y)]
    x = frames.permute(0, 3, 1, 2).float()
    x = F.grid_sample(x, grid.expand(n, crop, crop, 2), mode="bilinear", padding_mode="border", align_corners=False)
    x = x.round_()  # the graph's resize writes uint8 pixels
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255
    return (x - mean) / std


class DaliDecoder:
    """Batches of (video bytes, frame indices) through DALI's decoder and the graph's resize/crop/normalise."""

    def __init__(self, device: str, batch_size: int, crop: int, num_threads: int = 2):
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        from nvidia.dali import pipeline_def

        from .graph import _crop_resize

        self.device = device

        @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=0 if device == "gpu" else None,
                      prefetch_queue_depth=1)
        def graph():
            video = fn.external_source(name="video", dtype=types.UINT8, ndim=1)
            idx = fn.external_source(name="idx", dtype=types.INT32, ndim=1)
            frames = fn.decoders.video(video, device="mixed" if device == "gpu" else "cpu", frames=idx,
                                       pad_mode="edge")
            frames = _crop_resize(frames, float(crop), 0.5, 0.5, crop)
            return fn.crop_mirror_normalize(frames, mean=[m * 255 for m in CLIP_MEAN],
                                            std=[s * 255 for s in CLIP_STD], output_layout="FCHW",
                                            dtype=types.FLOAT)

        self.pipe = graph()
        self.pipe.build()

    def __call__(self, videos: list[bytes], indices: list[np.ndarray]) -> list[torch.Tensor]:
        from .loader import _to_torch
        self.pipe.feed_input("video", [np.frombuffer(v, np.uint8) for v in videos])
        self.pipe.feed_input("idx", [i.astype(np.int32) for i in indices])
        (out,) = self.pipe.run()
        clips = _to_torch(out, self.device)
        return list(clips.cpu() if self.device == "gpu" else clips)


def _pyav_clip(data: bytes, idx: np.ndarray, crop: int, name: str) -> torch.Tensor:
    return centre_crop_normalise(torch.from_numpy(decode_pyav(data, idx, name)), crop)


def clips_for(videos: list[str], sampling, device: str = "cpu", batch_size: int = 4, log=None):
    """Yield (names, clips float32 [B, V*T, 3, crop, crop], errors) for consecutive batches of `videos`; `errors`
    lists {"video", "error"} for the batch's videos that could not be read. `sampling` has frames, stride, views,
    crop (model.inference.Sampling). DALI decodes the codecs it reads on `device`; if a DALI batch fails, its
    videos are decoded one by one with PyAV, so one bad file never costs the others."""
    dali: DaliDecoder | None = None
    for lo in range(0, len(videos), batch_size):
        names, clips, errors, for_dali = [], {}, [], []
        for name in videos[lo:lo + batch_size]:
            try:
                data = read_bytes(name)
                info = probe(data, name)
                idx = view_indices(info.num_frames, sampling.frames, sampling.stride, sampling.views)
                if info.codec in DALI_CODECS[device]:
                    for_dali.append((name, data, idx))
                else:
                    clips[name] = _pyav_clip(data, idx, sampling.crop, name)
            except VideoError as e:
                errors.append({"video": name, "error": str(e).removeprefix(f"{name}: ")})
        if for_dali:
            try:
                dali = dali or DaliDecoder(device, batch_size, sampling.crop)
                out = dali([d for _, d, _ in for_dali], [i for _, _, i in for_dali])
                clips.update({name: c for (name, _, _), c in zip(for_dali, out)})
            except Exception:
                dali = None  # rebuilt for the next batch
                for name, data, idx in for_dali:
                    try:
                        clips[name] = _pyav_clip(data, idx, sampling.crop, name)
                    except VideoError as e:
                        errors.append({"video": name, "error": str(e).removeprefix(f"{name}: ")})
        names = [n for n in videos[lo:lo + batch_size] if n in clips]
        yield names, (torch.stack([clips[n] for n in names]) if names else None), errors
