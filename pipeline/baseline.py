"""The loader the official FROSTER code uses, rebuilt over our shards, kept as the benchmark's baseline.

Per sample, in torch DataLoader workers: read the video bytes, open them with PyAV, seek to the keyframe before the
clip, decode up to its last frame converting every frame of the window to an RGB numpy array (as the official
`pyav_decode` does), pick the clip's frames, normalise them, then jitter the short side, crop and flip with torch
(the official order). The
sampling and augmentation rules are the pipeline's own (`pipeline.sampling`), so the two loaders do the same work.
"""
from __future__ import annotations

import io
import multiprocessing
import os

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from shards import storage

from .loader import LoaderConfig
from .reader import unpack
from .samples import SampleTable, load
from .sampling import CLIP_MEAN, CLIP_STD, clip_indices, draw_batch_params, flip_changes_label


def read_member(shard: str, offset: int, size: int) -> bytes:
    """One ranged read of a shard (local file or s3://)."""
    return storage.read_bytes(shard, offset, offset + size)


def decode_clip(data: bytes, indices: np.ndarray, decoded=None) -> np.ndarray:
    """T x H x W x 3 uint8 frames at `indices` (clamped to the frames the stream really has). `decoded`
    (optional, a `multiprocessing.Value`) is increased by the frames decoded up to the clip's last one, from the
    keyframe the seek lands on."""
    first, last = int(indices.min()), int(indices.max())
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 30)
        tb = float(stream.time_base)
        if first > 0:
            container.seek(int(first / rate / tb), backward=True, any_frame=False, stream=stream)
        frames: dict[int, np.ndarray] = {}
        count = 0
        for n, frame in enumerate(container.decode(stream)):
            i = int(round(frame.pts * tb * rate)) if frame.pts is not None else n
            if i > last:
                break
            count += 1
            if i >= first:                     # every frame of the window to RGB, as the official decoder does
                frames[i] = frame.to_ndarray(format="rgb24")
    if decoded is not None:
        with decoded.get_lock():
            decoded.value += count
    if not frames:
        raise ValueError("no frames decoded")
    have = np.array(sorted(frames))
    pick = have[np.clip(np.searchsorted(have, indices, side="right") - 1, 0, len(have) - 1)]
    return np.stack([frames[int(i)] for i in pick])


class PyAVClips(Dataset):
    """(clip T x 3 x H x W float, label) per sample, decoded and augmented in the worker process."""

    def __init__(self, table: SampleTable, cfg: LoaderConfig, epoch: int = 0):
        self.table, self.cfg, self.epoch = table, cfg, epoch
        names = {lb: name for lb, name, _ in table.classes}
        self.no_flip = {int(lb) for lb in table.label if flip_changes_label(names.get(int(lb), ""))}
        self.mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        self.decoded_frames = multiprocessing.Value("q", 0)   # shared with the workers: frames decoded so far

    def __len__(self) -> int:
        return len(self.table) * (1 if self.cfg.train else self.cfg.num_views)

    def __getitem__(self, item: int):
        """Training: sample `item`. Test: (sample, view) = divmod(item, num_views), each decoded on its own as the
        official test loader does."""
        cfg, t = self.cfg, self.table
        V = 1 if cfg.train else cfg.num_views
        i, view = divmod(item, V)
        url = t.shards[t.shard[i]]
        sample = unpack(read_member(url, int(t.offset[i]), int(t.size[i])), t.keys[i], f"{url} {t.keys[i]}")
        data = sample.video.tobytes()
        with av.open(io.BytesIO(data)) as c:
            n = c.streams.video[0].frames
        if not n:       # a fragmented MP4's header has no frame count: the sample's `{key}.nfr` has it
            n = sample.frames
        rng = np.random.default_rng([cfg.seed, self.epoch, i])
        p = draw_batch_params(rng, 1, cfg.num_frames, train=cfg.train, short_side_range=cfg.short_side_range,
                              crop_size=cfg.crop_size, sampling=cfg.sampling, num_views=V)
        T = cfg.num_frames
        idx = clip_indices(n, T, cfg.sampling, cfg.frame_stride, p.r[0, view * T:(view + 1) * T], cfg.train)
        # as the official code: normalise the full frames, then scale-jitter, crop and flip
        frames = decode_clip(data, idx, self.decoded_frames)
        clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float()   # T x 3 x H x W
        clip = (clip / 255.0 - self.mean) / self.std
        h, w = clip.shape[-2:]
        s = float(p.short[0]) / min(h, w)
        clip = F.interpolate(clip, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False)
        h, w, c = clip.shape[-2], clip.shape[-1], cfg.crop_size
        y, x = int(round(float(p.crop_y[0]) * (h - c))), int(round(float(p.crop_x[0]) * (w - c)))
        clip = clip[..., y:y + c, x:x + c]
        if cfg.train and cfg.flip and p.flip[0] and (cfg.force_flip or int(t.label[i]) not in self.no_flip):
            clip = clip.flip(-1)
        return clip, int(t.label[i])


def process_cpu_s(pid: int) -> float:
    """utime + stime of a live process, all its threads, from /proc (Linux): how the benchmarks charge the CPU
    time of the DataLoader worker processes to the baseline."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_baseline(split: str, cfg: LoaderConfig, num_workers: int | None = None, epoch: int = 0) -> DataLoader:
    """A torch DataLoader over the same split, `num_workers` processes decoding with PyAV (default: all cores)."""
    table = load(split, shards=cfg.shards, manifest_split=cfg.manifest_split)
    workers = (os.cpu_count() or 1) if num_workers is None else num_workers
    return DataLoader(PyAVClips(table, cfg, epoch), batch_size=cfg.batch_size, shuffle=cfg.train,
                      num_workers=workers, drop_last=cfg.train, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(cfg.seed))
