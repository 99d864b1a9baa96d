"""Training orders: which sample comes when in an epoch, from (seed, epoch) alone, in numpy.

* `exact`: a uniform permutation of the split, as the official code's DistributedSampler draws. Free on local
  disk (a pread per sample wherever it lies) and for sparse splits (a ranged read per sample anyway).
* `interleave`: a global order that lets each shard be read front to back, for dense splits on object storage.
  Shards are put in a random order; shard p's samples are spread evenly over the positions [p, p + open_shards)
  (in units of "one shard's worth of samples"), block by block (a block is one ranged read, `block_bytes`) and in
  a random order inside each block (so a shard written class by class still mixes), so about `open_shards` shards are
  interleaved at any moment, and a uniform jitter of `jitter` units mixes neighbouring samples (a shuffle buffer of
  about jitter * shard size samples). Every shard is then read as a few large sequential ranged reads, and only the
  chunks of about open_shards + jitter shards are held in memory. Its quality is measured by `shard_spread`.
* `by_shard`: shards in a random order, each shard's samples together in a random order (the cheapest, and the
  least mixed).
"""
from __future__ import annotations

import numpy as np

MODES = ("auto", "sample", "interleave", "shard")


def exact(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.permutation(n)


def by_shard(rng: np.random.Generator, shard: np.ndarray, num_shards: int) -> np.ndarray:
    shard_rank = np.argsort(rng.permutation(num_shards))
    return np.lexsort((rng.random(len(shard)), shard_rank[shard]))


def interleave(rng: np.random.Generator, shard: np.ndarray, offset: np.ndarray, num_shards: int,
               open_shards: int = 16, jitter: float = 1.0, block_bytes: int = 64 << 20) -> np.ndarray:
    n = len(shard)
    pos = np.argsort(rng.permutation(num_shards)).astype(np.float64)   # shard -> its place in this epoch
    # blocks: the byte ranges the reader fetches in one request (`read_chunk_mb`); within a block the order is
    # free (the block is in memory from its first sample to its last anyway), between blocks it is stored order.
    # Shards are often written class by class, so a shard read front to back sample by sample would not mix.
    block = offset // block_bytes
    stored = np.lexsort((offset, block, shard))
    count = np.bincount(shard, minlength=num_shards)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    rank = np.empty(n, np.float64)
    rank[stored] = np.arange(n) - first[shard[stored]]                 # the sample's place in its shard
    new = np.ones(n, bool)
    new[1:] = (shard[stored][1:] != shard[stored][:-1]) | (block[stored][1:] != block[stored][:-1])
    bid = np.cumsum(new) - 1
    b_first = rank[stored][new]                                         # each block's first place
    b_size = np.bincount(bid)
    within = np.empty(n, np.float64)
    within[stored] = b_first[bid] + rng.random(n) * b_size[bid]         # a random place inside its block
    m = float(min(open_shards, num_shards))
    key = pos[shard] + m * within / count[shard] + jitter * rng.random(n)
    return np.argsort(key, kind="stable")


def shard_spread(order: np.ndarray, shard: np.ndarray, window: int = 64) -> tuple[float, int]:
    """(mean, minimum) number of distinct shards among `window` consecutive samples of `order`, over the
    order's non-overlapping windows. A uniform permutation of a split with many shards gives about `window`."""
    n = len(order) // window * window
    if n == 0:
        return float(len(np.unique(shard[order]))), len(np.unique(shard[order]))
    w = np.repeat(np.arange(n // window), window)
    pairs = np.unique(w.astype(np.int64) * (int(shard.max()) + 1) + shard[order[:n]])
    per = np.bincount(pairs // (int(shard.max()) + 1), minlength=n // window)
    return float(per.mean()), int(per.min())
