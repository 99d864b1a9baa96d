"""The DALI graph: take each sample's stream, pick frames from `{key}.nfr`, decode, resize, crop, flip, normalise.

One graph for both devices: `decoders.video` runs on "cpu" or "mixed" (NVDEC) and everything after it runs
where the frames are. The bytes come in through one batched external source, with the batch's random draws
(`sampling.BatchParams`): `pipeline.reader` reads them ahead in a thread pool, so DALI never opens a file or sends a
request, and its graph is the same whatever the split's size (building it costs the same at 1k or 240k samples).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types
from nvidia.dali import pipeline_def

from shards import fmp4

from .sampling import CLIP_MEAN, CLIP_STD, BatchParams, batch_indices, window_length

_DALI_DTYPES = {"fp32": types.FLOAT, "bf16": types.FLOAT, "fp16": types.FLOAT16}


@dataclass
class GraphSpec:
    """What the graph needs to know; the loader fills it from its `LoaderConfig` and the split."""

    device: str = "cpu"                 # "cpu" | "gpu"
    batch_size: int = 8
    num_frames: int = 8
    sampling: str = "dense"             # "dense" | "segment"
    num_views: int = 1                  # clips per sample, decoded in one pass (test mode's temporal views)
    frame_stride: int = 16
    train: bool = True
    crop_size: int = 224
    dtype: str = "fp32"
    label_map: dict[int, int] = field(default_factory=dict)   # source label -> split label
    no_flip: Sequence[int] = ()          # source labels that are never mirrored
    num_threads: int = 2
    prefetch: int = 2
    seed: int = 0
    device_id: int | None = None         # CUDA device for "gpu"
    gather: bool = False                 # decode only the fragments holding the sampled frames (`shards.fmp4`)


def frame_indices(nfr, r, spec: GraphSpec):
    """In-graph twin of `sampling.clip_indices`, for all views of a sample at once: int32 [V*T] per sample."""
    T, V = spec.num_frames, spec.num_views
    slot = types.Constant(np.tile(np.arange(T, dtype=np.float32), V))
    if spec.sampling == "dense":
        delta = dmath.max(nfr - window_length(T, spec.frame_stride), 0)
        span = delta + 1 if spec.train else delta
        idx = fn.cast(dmath.floor(r * span), dtype=types.INT32) + fn.cast(slot * spec.frame_stride, dtype=types.INT32)
    elif spec.sampling == "segment":
        idx = fn.cast(dmath.floor((slot + r) * nfr / T), dtype=types.INT32)
    else:
        raise ValueError(f"sampling must be 'dense' or 'segment', got {spec.sampling!r}")
    return dmath.max(dmath.min(idx, dmath.max(nfr - 1, 0)), 0)


def cut_stream(video, init, anchor):
    """`video[:init] + video[anchor:]` (init, anchor: int64 [1] per sample). With a fragmented MP4, init = the
    ftyp + moov boxes and anchor = a fragment's moof, this is a valid MP4 starting at that fragment's keyframe:
    the decoder, which cannot seek in an in-memory stream, then starts there instead of at frame 0.
    init = anchor = 0 leaves the stream whole."""
    size = video.shape(dtype=types.INT64)
    head = fn.slice(video, anchor * 0, init, axes=[0])
    body = fn.slice(video, anchor, size - anchor, axes=[0])
    return fn.cat(head, body, axis=0)


def _crop_resize(frames, short, crop_x, crop_y, crop: int):
    """Resize the short side to `short`, then take the `crop` x `crop` window anchored at (crop_x, crop_y) in [0, 1]
    of the free space, as one resampling of only the source pixels that end up in the crop (bilinear, as the
    reference's torch interpolation)."""
    shape = frames.shape(dtype=types.FLOAT)                  # F, H, W, C
    h, w = shape[1], shape[2]
    side = dmath.min(h, w) * crop / short                   # the crop's size in source pixels
    y0, x0 = crop_y * (h - side), crop_x * (w - side)
    return fn.resize(frames, size=[crop, crop], roi_start=fn.stack(y0, x0), roi_end=fn.stack(y0 + side, x0 + side),
                     roi_relative=False, interp_type=types.INTERP_LINEAR, antialias=False)


def check_device_dtype(device: str, dtype: str) -> None:
    """The one check of a loader's device and dtype (the loader and the graph both call it)."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    if dtype not in _DALI_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DALI_DTYPES)}, got {dtype!r}")
    if device == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("device='gpu' needs CUDA; use device='cpu' on this machine")


def define_graph(spec: GraphSpec, source: Callable):
    """The graph's nodes (call inside a pipeline context): clips, split labels, frame indices.

    `source(batch_info)` returns the batch's (streams, source labels, frame counts, r, crop_x, crop_y, flip, short,
    init, anchor, frame_offset): streams a list of uint8 arrays, the rest arrays over the batch; with
    `spec.gather`, the streams are gathered and the last three are replaced by which of their frames to decode.
    """
    keys = sorted(k for k in spec.label_map if k >= 0)      # unlabeled (-1) samples map to -1 by default
    # outputs 8..: (init, anchor, frame_offset) for the single cut, or (positions) for the gathered cut
    outputs = fn.external_source(
        source=source, num_outputs=9 if spec.gather else 11, batch=True, batch_info=True,
        dtype=[types.UINT8, types.INT32, types.INT32, types.FLOAT, types.FLOAT, types.FLOAT, types.INT32,
               types.FLOAT] + ([types.INT32] if spec.gather else [types.INT64, types.INT64, types.INT32]))
    video, src_label, nfr, r, crop_x, crop_y, coin, short = outputs[:8]
    idx = frame_indices(nfr, r, spec)
    device = "mixed" if spec.device == "gpu" else "cpu"
    if spec.gather:     # the source gathered the streams; positions: each frame's index in the gathered stream
        frames = fn.decoders.video(video, device=device, frames=outputs[8], pad_mode="edge")
    else:
        init, anchor, offset = outputs[8:]
        frames = fn.decoders.video(cut_stream(video, init, anchor), device=device, frames=idx - offset,
                                   pad_mode="edge")
    frames = _crop_resize(frames, short, crop_x, crop_y, spec.crop_size)
    if spec.no_flip:
        allowed = fn.lookup_table(src_label, keys=list(spec.no_flip), values=[0] * len(spec.no_flip),
                                  default_value=1, dtype=types.INT32)
        coin = coin * allowed
    clips = fn.crop_mirror_normalize(
        frames, mirror=coin, mean=[m * 255 for m in CLIP_MEAN], std=[s * 255 for s in CLIP_STD],
        output_layout="FCHW", dtype=_DALI_DTYPES[spec.dtype])
    labels = fn.lookup_table(src_label, keys=keys or [0], values=[spec.label_map[k] for k in keys] or [-1],
                             default_value=-1, dtype=types.INT64)
    return clips, labels, idx


def build_pipeline(spec: GraphSpec, samples: Callable[[int], list], params: Callable[[int], BatchParams],
                   counts: dict | None = None):
    """A built DALI pipeline whose i-th batch decodes `samples(i)` (`reader.Sample`s, one per slot) with the
    random draws `params(i)`. Outputs per sample: clips (V*T, 3, H, W), split label (int64), frame indices (int32,
    V*T); V = spec.num_views clips share one decoding pass.

    With `spec.gather`, the source replaces each stream that has a fragment table (`params(i).fragment_offsets`)
    by its gathered bytes (`shards.fmp4.gather_batch`: the init segment and the fragments holding the sample's
    frames, each cut after its last needed frame), computing the frames with `sampling.batch_indices` from the
    sample's own `{key}.nfr`, as the graph does. `counts` (optional) accumulates "decoded_frames" (frames
    handed to the decoder, prefetched batches included) and "whole_streams" (gather mode: streams with a table
    that were decoded whole all the same, see `fmp4.gather_batch`).
    """
    check_device_dtype(spec.device, spec.dtype)

    def source(info):
        i = info.iteration
        batch = samples(i)
        p = params(i)
        S = len(p.short)
        zero = np.zeros((S, 1), np.int64)
        init = zero if p.init is None else p.init.reshape(S, 1)
        anchor = zero if p.anchor is None else p.anchor.reshape(S, 1)
        offset = np.zeros(S, np.int32) if p.frame_offset is None else p.frame_offset
        label = np.array([x.label for x in batch], np.int32)
        nfr = np.array([x.frames for x in batch], np.int32)
        videos = [x.video for x in batch]
        out = [videos, label, nfr, p.r, p.crop_x, p.crop_y, p.flip, p.short]
        wanted = batch_indices(p.r, nfr, spec.num_frames, spec.sampling, spec.frame_stride, spec.train)
        whole = 0
        if spec.gather:
            none = [None] * S
            videos, pos, decoded, fell_back = fmp4.gather_batch(videos, p.fragment_offsets or none,
                                                                p.fragment_frames or none, wanted)
            out[0] = [np.frombuffer(v, np.uint8) if isinstance(v, bytes) else v for v in videos]
            out.append(pos)
            whole = int(fell_back.sum()) if p.fragment_offsets is not None else 0
        else:
            out += [init, anchor, offset]
            decoded = wanted.max(axis=1) + 1 - offset
        if counts is not None:
            counts["decoded_frames"] = counts.get("decoded_frames", 0) + int(decoded.sum())
            counts["whole_streams"] = counts.get("whole_streams", 0) + whole
        return tuple(out)

    @pipeline_def(batch_size=spec.batch_size, num_threads=spec.num_threads,
                  device_id=spec.device_id if spec.device == "gpu" else None,
                  prefetch_queue_depth=spec.prefetch, seed=spec.seed)
    def graph():
        return define_graph(spec, source)

    pipe = graph()
    pipe.build()
    return pipe
