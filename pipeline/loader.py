"""From a split file to batches of clips on the device, one disjoint part per rank.

The loader decides, once per epoch and in numpy, which rows (sample, view) each rank reads in which order
(`pipeline.order`: an exact permutation from (seed, epoch), or on object storage with a dense split an
interleaved order that reads each shard front to back; the split's order in test mode). The reader
(`pipeline.reader`) reads exactly those samples' bytes ahead of time in a thread pool (a pread per sample
locally, one or a few ranged GETs per shard on S3) and hands them to the DALI graph through an external source;
DALI decodes and augments. Nothing is written to disk, nothing is opened or requested per sample, and building
a loader reads only the split file, so an epoch costs the bytes it reads. Because the order is known up front,
keys, view indices and validity come from the plan, and resuming at batch b means reading the plan from row
b * batch_size on.

Storage faults are retried (`shards.storage.retry`) and never blamed on a sample. A sample whose bytes arrive but do not
decode is found by decoding the failing batch's samples one at a time (each read again, so storage is known
healthy) and replaced for the rest of the run; it is counted and named in `stats`, never a crash. Bytes that are
not what the split row says (another sample's key, a wrong `.lbl`) are an error naming the key; samples past the
end of a truncated shard are found when the loader is built and reported as skipped.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from . import order as _order
from . import samples as _samples
from .graph import GraphSpec, build_pipeline, check_device_dtype
from .reader import Feed, ShardFiles, check, chunk_plan, describe
from .sampling import BatchParams, batch_rng, draw_batch_params, first_frames

log = logging.getLogger(__name__)


class LoaderSettingError(ValueError):
    """A loader setting outside its range (a frame count, a stride, a batch size); the message names it."""


# (setting, lowest, highest): integers, then numbers
_INT_RANGES = (("num_frames", 1, 1024), ("frame_stride", 1, 1000), ("batch_size", 1, 65536), ("num_views", 1, 100),
               ("crop_size", 1, 8192), ("num_threads", 1, 1024), ("prefetch", 1, 1024), ("interleave_shards", 1,
                                                                                          1_000_000),
               ("io_threads", 1, 1024), ("read_chunk_mb", 1, 1_000_000), ("read_buffer_mb", 0, 10_000_000))
_FLOAT_RANGES = (("interleave_jitter", 0.0, 1e6), ("io_timeout_s", 0.001, 86400.0), ("io_retry_s", 0.0, 1e7))


@dataclass
class LoaderConfig:
    device: str = "cpu"            # "cpu" | "gpu"
    num_frames: int = 8
    sampling: str = "dense"        # "dense" (window of num_frames*frame_stride) | "segment" (TSN)
    frame_stride: int = 16
    batch_size: int = 8
    train: bool = True
    num_views: int = 3             # test mode: temporal views
    crop_size: int = 224
    short_side_range: tuple[int, int] = (224, 256)   # train jitter; test resizes short side to crop_size
    flip: bool = True              # never flips samples whose label would change (SSv2 left/right) unless forced
    dtype: str = "fp32"            # "fp32" | "bf16" | "fp16"
    seed: int = 0
    num_threads: int = 2           # DALI decoding threads
    prefetch: int = 2
    force_flip: bool = False       # flip left/right classes too (what the official code does; changes labels)
    shuffle: str = "auto"          # training order (pipeline.order): "sample" (an exact global permutation) |
                                   # "interleave" (global, each shard read front to back) | "shard" (shard by
                                   # shard) | "auto": "interleave" for a dense split on object storage, else "sample"
    interleave_shards: int = 16    # "interleave": shards mixed at any moment
    interleave_jitter: float = 1.0  # "interleave": shuffle-buffer width, in shards' worth of samples
    cache_dir: str | None = None   # unused: the loader writes no files (kept so old configs still load)
    shards: str | None = None      # manifest mode: only shards whose file name matches this glob
    manifest_split: str | None = None  # manifest mode: only rows whose manifest `split` is this
    io_threads: int = 8            # reader threads (reads run ahead of decoding)
    io_retry_s: float | None = None  # how long storage faults are retried; None: FROSTLINE_IO_RETRY_S or 600 s
    io_timeout_s: float = 60.0     # one object-storage request's connect / read timeout
    read_chunk_mb: int = 64        # object storage: the largest ranged read that serves several samples
    read_buffer_mb: int = 512      # object storage: most chunk bytes held at once, else one read per sample (0: always)
    gather: bool = True            # decode only the fragments holding the sampled frames, each cut after its last
                                   # one (`shards.fmp4`); False: the stream from the fragment before the clip on

    def __post_init__(self):
        """Every setting within its real range; the error names the setting and the value (`LoaderSettingError`)."""
        for name, low, high in _INT_RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise LoaderSettingError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        for name, low, high in _FLOAT_RANGES:
            value = getattr(self, name)
            if value is None and name == "io_retry_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not low <= value <= high:
                raise LoaderSettingError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
        lo_hi = tuple(self.short_side_range)
        if len(lo_hi) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in lo_hi):
            raise LoaderSettingError(f"short_side_range must be two integers [lo, hi], got {self.short_side_range!r}")


@dataclass
class Batch:
    clips: torch.Tensor        # B x T x 3 x H x W, CLIP-normalised, on the chosen device, requested dtype
    labels: torch.Tensor       # int64 [B], split labels (0-based in the split's class list)
    keys: list[str]
    views: torch.Tensor | None  # test mode: int64 [B] temporal view index; rows are (sample, view) pairs
    valid: torch.Tensor        # bool [B]; False for padding rows that must not be counted
    frames: torch.Tensor | None = None  # int32 [B, T]: decoded frame indices (for inspection and tests)


@dataclass
class Plan:
    """One rank's slots for one epoch; a slot is one sample read and decoded once, giving `views` rows."""

    sample: np.ndarray   # int [N]: slot -> sample index
    valid: np.ndarray    # bool [N]: False for padding slots
    views: int = 1

    def rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sample, view, valid) of the rows of slots lo..hi, each slot's views in order."""
        V = self.views
        return (np.repeat(self.sample[lo:hi], V), np.tile(np.arange(V), hi - lo), np.repeat(self.valid[lo:hi], V))


def dist_info() -> tuple[int, int]:
    """(rank, world size) from torch.distributed (accelerate initialises it), else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class VideoLoader:
    def __init__(self, table: _samples.SampleTable, cfg: LoaderConfig, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        check_device_dtype(cfg.device, cfg.dtype)
        if cfg.shuffle not in _order.MODES:
            raise ValueError(f"shuffle must be one of {', '.join(_order.MODES)}, got {cfg.shuffle!r}")
        self.table, self.cfg, self.rank, self.world_size = table, cfg, rank, world_size
        self.classes = table.classes
        self._label_map = table.label_map()
        self._no_flip = [] if cfg.force_flip else table.no_flip_sources()
        self._epoch, self._batch = 0, 0
        self._bad: dict[int, str] = {}     # sample index -> reason
        self.cache_dir = None              # the loader writes no files
        n, W = len(table), world_size
        self.views = 1 if cfg.train else cfg.num_views
        # test mode decodes all views of a sample in one pass: batch_size rows = batch_size // views samples
        self.slots = cfg.batch_size if cfg.train else max(1, cfg.batch_size // self.views)
        self.rows_per_batch = self.slots * self.views
        if cfg.train:
            self._batches = max(1, n // (self.slots * W))
            self.num_samples = self._batches * self.slots
        else:
            lo, hi = self._test_block(rank)
            self.num_samples = hi - lo
            self._batches = max(1, -(-(-(-n // W)) // self.slots))
        self.stats: dict = {"rows": self.num_samples, "read": 0, "decode_errors": 0, "skipped_keys": [],
                            "batches": 0, "rebuilds": 0, "requests": 0, "bytes_read": 0, "decoded_frames": 0,
                            "whole_streams": 0}
        self.files = ShardFiles(table.shards, retry_s=cfg.io_retry_s, timeout_s=cfg.io_timeout_s)
        sizes = self.files.sizes()
        self.shuffle = self._resolve_shuffle(sizes)
        self.stats["shuffle"] = self.shuffle
        self._find_truncated(sizes)

    def _resolve_shuffle(self, sizes: np.ndarray) -> str:
        """"auto": an exact permutation where reads are cheap (local disk; a sparse split reads per sample
        anyway), the interleaved order for a dense split on object storage."""
        if self.cfg.shuffle != "auto":
            return self.cfg.shuffle
        if not self.files.remote:
            return "sample"
        used = np.unique(self.table.shard)
        density = float(self.table.size.sum()) / max(1, int(sizes[used].sum()))
        return "interleave" if density >= 0.5 else "sample"

    def _find_truncated(self, sizes: np.ndarray) -> None:
        """Samples that end past their shard's end (a truncated tar) are reported now, once per shard, and skipped;
        this rank counts those of its own part of the split, so the ranks' counts add up."""
        t = self.table
        cut = np.flatnonzero(t.offset + t.size > sizes[t.shard])
        if len(cut) == 0:
            return
        lo, hi = self._test_block(self.rank)
        for s in np.unique(t.shard[cut]):
            rows = cut[t.shard[cut] == s]
            log.error("shard %s is truncated (%d bytes): %d of its samples end past it and are skipped, "
                      "e.g. %s", t.shards[s], int(sizes[s]), len(rows), [t.keys[i] for i in rows[:3]])
        for i in cut.tolist():
            self._bad[i] = f"its shard {t.shards[t.shard[i]]} is truncated"
            if lo <= i < hi:
                self.stats["decode_errors"] += 1
                self.stats["skipped_keys"].append(t.keys[i])

    # -- the public interface --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._batches

    def set_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._epoch, self._batch = int(epoch), 0

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batch": self._batch,
                "skipped_keys": [self.table.keys[i] for i in sorted(self._bad)]}

    def load_state_dict(self, state: dict) -> None:
        self._epoch, self._batch = int(state["epoch"]), int(state["batch"])
        index = {k: i for i, k in enumerate(self.table.keys)}
        for k in state.get("skipped_keys", []):
            if k in index:
                self._bad.setdefault(index[k], "skipped before the checkpoint")

    def close(self) -> None:
        self.files.close()

    def __iter__(self) -> Iterator[Batch]:
        epoch = self._epoch
        if self._batch >= self._batches:     # finished epoch: the next iteration starts the next one
            self._epoch, self._batch = epoch + 1, 0
            epoch += 1
        while self._batch < self._batches:
            plan = self.plan(epoch)
            start = self._batch
            feed = self._feed(plan, start)
            if start:
                self.stats["rebuilds"] += 1
            try:
                pipe = build_pipeline(self._spec(epoch, start), feed.batch,
                                      lambda i: self.graph_params(plan, epoch, start + i), counts=self.stats)
                while self._batch < self._batches:
                    try:
                        clips, labels, frames = pipe.run()
                    except Exception as err:  # DALI reports a failed read or decode as a pipeline error
                        if feed.error is not None:
                            raise feed.error from None     # storage gave up, or the bytes are not the row's
                        self._find_bad(plan, epoch, self._batch, err)
                        break
                    b = self._batch
                    batch = self._to_batch(plan, b, clips, labels, frames)
                    self._batch += 1
                    self.stats["batches"] += 1
                    self.stats["read"] += int(plan.valid[b * self.slots:(b + 1) * self.slots].sum())
                    self._count_io()
                    yield batch
            finally:
                pipe = None
                feed.close()
                self._count_io()
        self._epoch, self._batch = epoch + 1, 0

    def _count_io(self) -> None:
        self.stats["requests"], self.stats["bytes_read"] = self.files.requests, self.files.bytes

    # -- planning ----------------------------------------------------------------------------------------
    def _test_block(self, rank: int) -> tuple[int, int]:
        n, W = len(self.table), self.world_size
        return rank * n // W, (rank + 1) * n // W

    def plan(self, epoch: int) -> Plan:
        """This rank's slots for `epoch`, with samples found bad replaced (the slot count never changes)."""
        cfg, n = self.cfg, len(self.table)
        slots = self._batches * self.slots
        if cfg.train:
            rng = np.random.default_rng([cfg.seed, epoch, 0xE90C])
            t = self.table
            if self.shuffle == "sample":
                perm = _order.exact(rng, n)
            elif self.shuffle == "shard":
                perm = _order.by_shard(rng, t.shard, len(t.shards))
            else:
                perm = _order.interleave(rng, t.shard, t.offset, len(t.shards), cfg.interleave_shards,
                                         cfg.interleave_jitter, cfg.read_chunk_mb << 20)
            # np.resize wraps around only when the split is smaller than one batch per rank
            order = np.resize(perm, slots * self.world_size)
            sample = order[self.rank * slots:(self.rank + 1) * slots]
            valid = np.ones(slots, bool)
        else:
            lo, hi = self._test_block(self.rank)
            pad = slots - (hi - lo)
            sample = np.concatenate([np.arange(lo, hi), np.full(pad, lo if hi > lo else 0)])
            valid = np.arange(slots) < hi - lo
        if self._bad:
            sample, valid = sample.copy(), valid.copy()
            good = np.setdiff1d(np.arange(n), np.fromiter(self._bad, int))
            if len(good) == 0:
                raise RuntimeError(f"every sample of the split failed to decode: {self.stats['skipped_keys'][:5]}")
            bad = np.isin(sample, list(self._bad))
            # training: a stand-in drawn from the good samples keeps the batch full; test: a padding slot
            pick = np.random.default_rng([cfg.seed, epoch, self.rank, 0xBAD]).integers(0, len(good), bad.sum())
            sample[bad] = good[pick]
            if not cfg.train:
                valid[bad] = False
        return Plan(sample=sample, valid=valid, views=self.views)

    def _feed(self, plan: Plan, start: int) -> Feed:
        """The reader for the slots of `plan` from batch `start` on: on object storage, samples close together in
        a shard share ranged reads unless holding those reads would exceed `read_buffer_mb`."""
        cfg, t = self.cfg, self.table
        sample = plan.sample[start * self.slots:]
        args = (t.shard[sample], t.offset[sample], t.size[sample])
        chunks = chunk_plan(*args, coalesce=self.files.remote, chunk_bytes=cfg.read_chunk_mb << 20)
        if chunks.peak_bytes > cfg.read_buffer_mb << 20:
            log.info("reading sample by sample: grouped reads would hold %.0f MB (read_buffer_mb=%d)",
                     chunks.peak_bytes / 2**20, cfg.read_buffer_mb)
            chunks = chunk_plan(*args, coalesce=False)
        return Feed(self.files, chunks, sample, t, self.slots,
                    ahead=cfg.prefetch + 2, threads=cfg.io_threads)

    def _spec(self, epoch: int, start: int, batch_size: int | None = None) -> GraphSpec:
        cfg = self.cfg
        device_id = None
        if cfg.device == "gpu":
            device_id = torch.cuda.current_device()
        return GraphSpec(device=cfg.device, batch_size=batch_size or self.slots, num_frames=cfg.num_frames,
                         sampling=cfg.sampling, num_views=self.views, frame_stride=cfg.frame_stride, train=cfg.train,
                         crop_size=cfg.crop_size, dtype=cfg.dtype, label_map=self._label_map,
                         no_flip=self._no_flip, num_threads=cfg.num_threads, prefetch=cfg.prefetch,
                         seed=(cfg.seed * 1_000_003 + epoch * 1009 + self.rank * 7 + start) % (2**31),
                         device_id=device_id, gather=cfg.gather and self.table.fragments is not None)

    def batch_params(self, epoch: int, b: int) -> BatchParams:
        """The random draws of batch `b` of `epoch` on this rank: a function of (seed, epoch, rank, b) only."""
        cfg = self.cfg
        p = draw_batch_params(batch_rng(cfg.seed, epoch, self.rank, b), self.slots, cfg.num_frames, train=cfg.train,
                              short_side_range=cfg.short_side_range, crop_size=cfg.crop_size,
                              num_views=self.views, sampling=cfg.sampling)
        if not cfg.flip:
            p.flip[:] = 0
        return p

    def graph_params(self, plan: Plan, epoch: int, b: int) -> BatchParams:
        """Batch b's draws plus what the graph needs to skip frames. Gather mode (`cfg.gather`): each sample's
        fragment table, from which the graph's source gathers the fragments holding its frames. Otherwise where
        to cut each sample's stream: at the fragment holding the first frame the sample needs (its window start,
        or its earliest view / segment), so decoding skips what comes before. Vectorised over the batch; samples
        without a fragment table stay whole."""
        p = self.batch_params(epoch, b)
        frags = self.table.fragments
        S = self.slots
        if b >= len(plan.sample) // S:      # past the plan's end (DALI prefetches ahead): the feed repeats the last
            b = len(plan.sample) // S - 1   # batch's samples; cut them as well (those batches are never yielded)
        samples = plan.sample[b * S:(b + 1) * S]
        if frags is None or len(samples) < S:
            return p
        cfg = self.cfg
        if cfg.gather:
            spans = [(int(a), int(a + c)) if c else None for a, c in zip(frags.start[samples], frags.count[samples])]
            p.fragment_offsets = [None if s is None else frags.offsets[s[0]:s[1]] for s in spans]
            p.fragment_frames = [None if s is None else frags.frames[s[0]:s[1]] for s in spans]
            return p
        first = first_frames(p.r, frags.num_frames[samples], cfg.num_frames, cfg.sampling, cfg.frame_stride,
                             cfg.train)
        p.init, p.anchor, p.frame_offset = frags.cut(samples, first)
        return p

    # -- bad samples -----------------------------------------------------------------------------------
    def _find_bad(self, plan: Plan, epoch: int, b: int, err: Exception) -> None:
        """Decode the samples of batches b .. b+prefetch one at a time to find which failed; mark them bad."""
        S = self.slots
        found = []
        for slot in range(b * S, min(len(plan.sample), (b + self.cfg.prefetch + 1) * S)):
            s = int(plan.sample[slot])
            if s in self._bad or s in found:
                continue
            reason = self._probe(plan, epoch, slot)
            if reason is not None:
                found.append(s)
                self._bad[s] = reason
                key = self.table.keys[s]
                self.stats["decode_errors"] += 1
                self.stats["skipped_keys"].append(key)
                t = self.table
                log.warning("skipping %s: it does not decode: %s", describe(key, t.shards[t.shard[s]],
                                                                             int(t.offset[s])), reason)
        if not found:
            raise RuntimeError(f"the video pipeline failed at batch {b} of epoch {epoch} and no single sample "
                               f"is to blame: {err}") from err

    def _probe(self, plan: Plan, epoch: int, slot: int) -> str | None:
        """Read one slot's sample again (retried: storage is healthy once this returns) and decode it alone;
        the error text, or None when it decodes."""
        t, s = self.table, int(plan.sample[slot])
        span = self.files.read(int(t.shard[s]), int(t.offset[s]), int(t.offset[s] + t.size[s]))
        sample = check(span, t, s, self.files.urls)        # wrong bytes are an error, never a bad video
        spec = self._spec(epoch, 0, batch_size=1)
        spec.prefetch = 1
        params = self.graph_params(plan, epoch, slot // self.slots)
        k = slot % self.slots
        one_params = BatchParams(**{f: None if getattr(params, f) is None else getattr(params, f)[k:k + 1]
                                    for f in params.__dataclass_fields__})
        try:
            pipe = build_pipeline(spec, lambda i: [sample], lambda i: one_params)
            pipe.run()
            del pipe
            return None
        except Exception as e:  # the reason is reported with the key
            return _reason(e)

    # -- output ----------------------------------------------------------------------------------------
    def _to_batch(self, plan: Plan, b: int, clips, labels, frames) -> Batch:
        cfg, S, V, T = self.cfg, self.slots, self.views, self.cfg.num_frames
        sample, view, valid = plan.rows(b * S, (b + 1) * S)
        out = _to_torch(clips, cfg.device)                       # S x V*T x 3 x H x W
        out = out.reshape(S * V, T, *out.shape[2:])
        if cfg.dtype == "bf16":
            out = out.to(torch.bfloat16)
        return Batch(clips=out, labels=_to_torch(labels, "cpu").repeat_interleave(V).to(out.device),
                     keys=[self.table.keys[s] for s in sample],
                     views=None if cfg.train else torch.from_numpy(view.astype(np.int64)),
                     valid=torch.from_numpy(valid), frames=_to_torch(frames, "cpu").reshape(S * V, T))


def _reason(err: Exception) -> str:
    """The informative line of a DALI error (its last line is often only "pipeline object is no longer valid")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if re.search(r"video|decod|invalid|frame|codec", line, re.IGNORECASE) and "no longer valid" not in line:
            return line[:300]
    return lines[0][:300] if lines else type(err).__name__


def _to_torch(tl, device: str) -> torch.Tensor:
    """A dense DALI TensorList as a torch tensor on `device` (one copy; DALI reuses its buffers)."""
    from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type

    t = tl.as_tensor()
    shape = tuple(t.shape())
    dtype = to_torch_type[t.dtype]
    if device == "gpu":
        out = torch.empty(shape, dtype=dtype, device=torch.device("cuda", torch.cuda.current_device()))
        feed_ndarray(t, out, cuda_stream=torch.cuda.current_stream())
    else:
        out = torch.empty(shape, dtype=dtype)
        feed_ndarray(t, out)
    return out


def build_loader(split: str, cfg: LoaderConfig, rank: int | None = 0, world_size: int | None = 1) -> VideoLoader:
    """A loader over a split Parquet file, or over a shard store (its folder, s3:// URL or manifest.parquet,
    optionally narrowed by `cfg.shards` / `cfg.manifest_split`). rank/world_size None: from torch.distributed."""
    if rank is None or world_size is None:
        rank, world_size = dist_info()
    table = _samples.load(split, shards=cfg.shards, manifest_split=cfg.manifest_split)
    return VideoLoader(table, cfg, rank=rank, world_size=world_size)
