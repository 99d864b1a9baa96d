"""Frame-index arithmetic and augmentation parameters, in plain numpy.

The DALI graph (`pipeline.graph`) computes the same formulas in-graph from the shard's `{key}.nfr`;
these numpy versions are the reference the tests hold the graph to, and what the PyAV baseline uses.

Every random number of a batch comes from one numpy Generator seeded by (seed, epoch, rank, batch), so a
resumed run draws exactly the batch an uninterrupted run would have drawn.

Rules (as in FROSTER / Open-VCLIP, and TSN for segment sampling):

* dense: T frames `stride` apart, i.e. a window of (T-1)*stride + 1 frames. Training starts it at a uniform
  random integer in [0, delta], delta = max(n - window, 0); test view v of V starts at floor(delta * v / V),
  i.e. at 0, 1/3 and 2/3 of the available range for V = 3.
* segment: the video is cut into T equal segments; frame i is floor((i + r_i) * n / T) with r_i uniform in
  [0, 1) in training and r_i = (v + 0.5) / V in test (the middle frame for V = 1).
* Indices past the last frame are clamped to it (short videos repeat their last frame).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_LEFT_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def window_length(num_frames: int, stride: int) -> int:
    """Frames spanned by a dense clip: 8 frames at stride 16 span 113 frames (a 112-frame window)."""
    return (num_frames - 1) * stride + 1


def dense_indices(n: int, num_frames: int, stride: int, r: float, train: bool) -> np.ndarray:
    """Frame indices of one dense clip of a video with `n` frames; `r` in [0, 1) places the window."""
    delta = max(n - window_length(num_frames, stride), 0)
    r32 = np.float32(r)
    start = int(np.floor(r32 * np.float32(delta + 1 if train else delta)))  # float32, as in the graph
    return _clamp(start + stride * np.arange(num_frames), n)


def segment_indices(n: int, num_frames: int, r: np.ndarray) -> np.ndarray:
    """TSN indices: frame i is floor((i + r_i) * n / T) (float32 arithmetic, as in the graph)."""
    r = np.asarray(r, dtype=np.float32)
    pos = (np.arange(num_frames, dtype=np.float32) + r) * np.float32(n) / np.float32(num_frames)
    return _clamp(np.floor(pos).astype(np.int64), n)


def clip_indices(n: int, num_frames: int, sampling: str, stride: int, r: np.ndarray, train: bool) -> np.ndarray:
    """The indices the graph decodes for one row, given that row's `r` vector (length num_frames)."""
    if sampling == "dense":
        return dense_indices(n, num_frames, stride, r[0], train)
    if sampling == "segment":
        return segment_indices(n, num_frames, r)
    raise ValueError(f"sampling must be 'dense' or 'segment', got {sampling!r}")


def batch_indices(r: np.ndarray, n: np.ndarray, num_frames: int, sampling: str, stride: int,
                  train: bool) -> np.ndarray:
    """Every frame index of a batch, int64 [S, V*T], vectorised with the graph's float32 arithmetic: `r` [S, V*T],
    `n` [S] frame counts. Equal to the graph's `frame_indices` (and to `clip_indices` row by row)."""
    r = np.asarray(r, np.float32)
    n = np.asarray(n, np.int64)[:, None]
    T = num_frames
    slot = np.tile(np.arange(T, dtype=np.float32), r.shape[1] // T)[None]
    if sampling == "dense":
        delta = np.maximum(n - window_length(T, stride), 0)
        span = (delta + 1 if train else delta).astype(np.float32)
        idx = np.floor(r * span).astype(np.int64) + (slot * stride).astype(np.int64)
    elif sampling == "segment":
        idx = np.floor((slot + r) * n.astype(np.float32) / np.float32(T)).astype(np.int64)
    else:
        raise ValueError(f"sampling must be 'dense' or 'segment', got {sampling!r}")
    return np.clip(idx, 0, np.maximum(n - 1, 0))


def first_frames(r: np.ndarray, n: np.ndarray, num_frames: int, sampling: str, stride: int,
                 train: bool) -> np.ndarray:
    """The smallest frame index each row of a batch decodes (all its views): the loader cuts the stream there."""
    return batch_indices(r, n, num_frames, sampling, stride, train).min(axis=1)


def _clamp(idx: np.ndarray, n: int) -> np.ndarray:
    return np.clip(idx, 0, max(n - 1, 0)).astype(np.int64)


def view_position(view: np.ndarray, num_views: int, sampling: str) -> np.ndarray:
    """The test-mode `r` of each view: v/V for dense windows, (v + 0.5)/V inside each segment."""
    view = np.asarray(view, dtype=np.float32)
    return (view / num_views) if sampling == "dense" else (view + 0.5) / num_views


@dataclass
class BatchParams:
    """Per-sample random draws of one batch; the graph reads them through one batched external source."""

    r: np.ndarray        # float32 [S, V*T]: temporal placement of each frame slot (view v: [v*T:(v+1)*T])
    crop_x: np.ndarray   # float32 [S] in [0, 1]: horizontal crop anchor (0.5 = centre)
    crop_y: np.ndarray   # float32 [S] in [0, 1]
    flip: np.ndarray     # int32 [S] in {0, 1}: coin, before the per-class flip mask
    short: np.ndarray    # float32 [S]: target short side in pixels
    # where to cut each stored stream (filled by the loader from the fragment tables; None: decode it whole):
    # decode stream[:init] + stream[anchor:], whose frame 0 is frame `frame_offset` of the stream
    init: np.ndarray | None = None          # int64 [S]: bytes of ftyp + moov (0: no cut)
    anchor: np.ndarray | None = None        # int64 [S]
    frame_offset: np.ndarray | None = None  # int32 [S]
    # the gathered cut (`LoaderConfig.gather`): each sample's fragment table (None: no table, decoded whole); the
    # graph's source hands the decoder only the fragments holding the sample's frames (`shards.fmp4`)
    fragment_offsets: list | None = None    # [S] of int64 arrays (byte offset of each moof) or None
    fragment_frames: list | None = None     # [S] of int64 arrays (first frame of each fragment) or None


def batch_rng(seed: int, epoch: int, rank: int, batch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, rank, batch, 0x5EED])


def draw_batch_params(rng: np.random.Generator | None, samples: int, num_frames: int, *, train: bool,
                      short_side_range: tuple[int, int], crop_size: int, num_views: int = 1,
                      sampling: str = "dense") -> BatchParams:
    """Training (one clip per sample): a random window start (dense; one value for the clip) or one random offset
    per segment, short side uniform in the closed range, crop anchors in [0, 1], flip coin p = 0.5.
    Test: all `num_views` views of a sample at once (they are decoded in one pass), short side = crop_size,
    centre crop, no flip."""
    T = num_frames
    if train:
        lo, hi = short_side_range
        if not (crop_size <= lo <= hi):
            raise ValueError(f"short_side_range {short_side_range} must satisfy crop_size ({crop_size}) <= lo <= hi")
        if sampling == "dense":
            r = np.repeat(rng.random((samples, 1), dtype=np.float32), T, axis=1)
        else:
            r = rng.random((samples, T), dtype=np.float32)
        return BatchParams(
            r=r,
            crop_x=rng.random(samples, dtype=np.float32),
            crop_y=rng.random(samples, dtype=np.float32),
            flip=(rng.random(samples) < 0.5).astype(np.int32),
            short=rng.integers(lo, hi + 1, samples).astype(np.float32),
        )
    pos = np.repeat(view_position(np.arange(num_views), num_views, sampling), T)
    return BatchParams(
        r=np.tile(pos[None].astype(np.float32), (samples, 1)),
        crop_x=np.full(samples, 0.5, np.float32),
        crop_y=np.full(samples, 0.5, np.float32),
        flip=np.zeros(samples, np.int32),
        short=np.full(samples, float(crop_size), np.float32),
    )


def flip_changes_label(class_name: str) -> bool:
    """A class whose name says left or right (SSv2's "... from left to right", a generated "...MovingLeft")
    changes meaning when mirrored. Words are split at spaces, underscores and CamelCase boundaries."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", class_name).replace("_", " ")
    return bool(_LEFT_RIGHT.search(words))
