"""From a split file to batches of clips on the device, one disjoint part per rank.

The loader decides, once per epoch and in numpy, which rows (sample, view) each rank reads in which order: a
permutation from (seed, epoch) in training, the split's order in test mode. It writes that order as DALI index
files (runs of consecutive rows from one shard share a file) and builds the graph over them, so DALI reads
exactly these samples, in this order, and Python never handles a sample. Because the order is known up front,
keys, view indices and validity come from the plan, and resuming at batch b means writing the plan from row
b * batch_size on. A sample that makes the graph fail is found by decoding the failing batch's samples one by
one, then replaced for the rest of the run; it is counted and named, never a crash.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from shards.index import format_index

from . import samples as _samples
from .graph import GraphSpec, build_pipeline
from .sampling import BatchParams, batch_rng, draw_batch_params, first_frames

log = logging.getLogger(__name__)


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
    num_threads: int = 2
    prefetch: int = 2
    force_flip: bool = False       # flip left/right classes too (what the official code does; changes labels)
    shuffle: str = "sample"        # training order: "sample" (a global permutation) | "shard" (shard order, then
                                   # samples within each shard: one index file per shard, for huge splits on S3)
    cache_dir: str | None = None   # where index files go; default: a temporary folder removed on close()
    shards: str | None = None      # manifest mode: only shards whose file name matches this glob
    manifest_split: str | None = None  # manifest mode: only rows whose manifest `split` is this


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
        if cfg.device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {cfg.device!r}")
        if cfg.dtype not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"dtype must be 'fp32', 'bf16' or 'fp16', got {cfg.dtype!r}")
        if cfg.device == "gpu" and not torch.cuda.is_available():
            raise RuntimeError("device='gpu' needs CUDA; use device='cpu' on this machine")
        self.table, self.cfg, self.rank, self.world_size = table, cfg, rank, world_size
        self.classes = table.classes
        self._label_map = table.label_map()
        self._no_flip = [] if cfg.force_flip else table.no_flip_sources()
        self._epoch, self._batch = 0, 0
        self._bad: dict[int, str] = {}     # sample index -> reason
        self.stats: dict = {"decode_errors": 0, "skipped_keys": [], "batches": 0, "rebuilds": 0}
        self._own_cache = cfg.cache_dir is None
        self.cache_dir = tempfile.mkdtemp(prefix="frostline-idx-") if self._own_cache else cfg.cache_dir
        os.makedirs(self.cache_dir, exist_ok=True)
        # a temporary cache goes with the loader, or at interpreter exit at the latest
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.cache_dir, True) if self._own_cache else None
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
        if self._cleanup is not None:
            self._cleanup()

    def __iter__(self) -> Iterator[Batch]:
        epoch = self._epoch
        if self._batch >= self._batches:     # finished epoch: the next iteration starts the next one
            self._epoch, self._batch = epoch + 1, 0
            epoch += 1
        while self._batch < self._batches:
            plan = self.plan(epoch)
            start = self._batch
            pipe = self._pipeline(plan, epoch, start)
            try:
                while self._batch < self._batches:
                    try:
                        clips, labels, frames = pipe.run()
                    except Exception as err:  # DALI reports any failed sample as a pipeline error
                        self._find_bad(plan, epoch, self._batch, err)
                        break
                    b = self._batch
                    batch = self._to_batch(plan, b, clips, labels, frames)
                    self._batch += 1
                    self.stats["batches"] += 1
                    yield batch
            finally:
                del pipe
        self._epoch, self._batch = epoch + 1, 0

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
            if cfg.shuffle == "sample":
                perm = rng.permutation(n)
            elif cfg.shuffle == "shard":
                shard_rank = np.argsort(rng.permutation(len(self.table.shards)))
                perm = np.lexsort((rng.random(n), shard_rank[self.table.shard]))
            else:
                raise ValueError(f"shuffle must be 'sample' or 'shard', got {cfg.shuffle!r}")
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

    def _write_index(self, plan: Plan, start: int, tag: str) -> tuple[list[str], list[str]]:
        """Index files for slots[start:], one per run of consecutive slots from the same shard."""
        folder = os.path.join(self.cache_dir, tag)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        t = self.table
        rows = plan.sample[start:]
        shard = t.shard[rows]
        cuts = np.flatnonzero(np.diff(shard)) + 1
        paths, index_paths = [], []
        for i, run in enumerate(np.split(np.arange(len(rows)), cuts)):
            if len(run) == 0:
                continue
            p = os.path.join(folder, f"{i:06d}.idx")
            with open(p, "w") as f:
                f.write(format_index(t.entries[s] for s in rows[run]))
            paths.append(t.shards[shard[run[0]]])
            index_paths.append(p)
        return paths, index_paths

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
                         device_id=device_id)

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
        """Batch b's draws plus where to cut each sample's stream: at the fragment holding the first frame the
        sample needs (its window start, or its earliest view / segment), so decoding skips what comes before.
        Vectorised over the batch; samples without a fragment table stay whole."""
        p = self.batch_params(epoch, b)
        frags = self.table.fragments
        samples = plan.sample[b * self.slots:(b + 1) * self.slots]
        if frags is None or len(samples) < self.slots:   # past the plan's end (DALI prefetches ahead): uncut
            return p
        cfg = self.cfg
        first = first_frames(p.r, frags.num_frames[samples], cfg.num_frames, cfg.sampling, cfg.frame_stride,
                             cfg.train)
        p.init, p.anchor, p.frame_offset = frags.cut(samples, first)
        return p

    def _pipeline(self, plan: Plan, epoch: int, start: int):
        paths, index_paths = self._write_index(plan, start * self.slots, f"rank{self.rank}")
        if start:
            self.stats["rebuilds"] += 1
        return build_pipeline(self._spec(epoch, start), paths, index_paths,
                              lambda i: self.graph_params(plan, epoch, start + i))

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
                msg = f"skipping sample {key!r} (shard {self.table.shards[self.table.shard[s]]}): {reason}"
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                log.warning(msg)
        if not found:
            raise RuntimeError(f"the video pipeline failed at batch {b} of epoch {epoch} and no single sample "
                               f"is to blame: {err}") from err

    def _probe(self, plan: Plan, epoch: int, slot: int) -> str | None:
        """Run the graph on one slot alone; the error text, or None when it decodes."""
        one = Plan(sample=plan.sample[slot:slot + 1], valid=plan.valid[slot:slot + 1], views=plan.views)
        paths, index_paths = self._write_index(one, 0, f"probe{self.rank}")
        spec = self._spec(epoch, 0, batch_size=1)
        spec.prefetch = 1
        params = self.graph_params(plan, epoch, slot // self.slots)
        k = slot % self.slots
        one_params = BatchParams(**{f: None if getattr(params, f) is None else getattr(params, f)[k:k + 1]
                                    for f in params.__dataclass_fields__})
        try:
            pipe = build_pipeline(spec, paths, index_paths, lambda i: one_params)
            pipe.run()
            del pipe
            return None
        except Exception as e:  # the reason is reported with the key
            return str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__

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
