"""Training orders and read plans at dataset scale, in numpy: the interleaved order is a permutation that reads
each shard front to back with few shards open, its mixing is measured, and grouped reads cost one request per
shard for a dense split while an exact permutation's would hold the whole split (so it reads per sample)."""
from __future__ import annotations

import numpy as np

from pipeline.order import by_shard, exact, interleave, shard_spread
from pipeline.reader import chunk_plan

SHARDS, PER = 240, 1000
SPAN = 4608


def _table():
    shard = np.repeat(np.arange(SHARDS), PER)
    offset = np.tile(np.arange(PER) * SPAN, SHARDS)
    return shard, offset, np.full(len(shard), SPAN)


def test_interleave_is_a_deterministic_permutation_reading_shards_forward():
    shard, offset, _ = _table()
    block = 512 * SPAN                                       # two blocks (ranged reads) per shard
    a = interleave(np.random.default_rng([0, 1]), shard, offset, SHARDS, open_shards=16, jitter=0.0, block_bytes=block)
    b = interleave(np.random.default_rng([0, 1]), shard, offset, SHARDS, open_shards=16, jitter=0.0, block_bytes=block)
    c = interleave(np.random.default_rng([0, 2]), shard, offset, SHARDS, open_shards=16, jitter=0.0, block_bytes=block)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(np.sort(a), np.arange(len(shard)))
    for s in (0, 17, 239):                # without jitter: each shard block by block, shuffled inside a block
        blocks = offset[a[shard[a] == s]] // block
        assert np.all(np.diff(blocks) >= 0) and not np.all(np.diff(offset[a[shard[a] == s]]) > 0)
    first = np.full(SHARDS, len(a))
    last = np.zeros(SHARDS, int)
    np.minimum.at(first, shard[a], np.arange(len(a)))
    np.maximum.at(last, shard[a], np.arange(len(a)))
    open_at = [(first <= t).sum() - (last < t).sum() for t in range(0, len(a), 997)]
    assert max(open_at) <= 18                                 # about 16 shards open at any moment


def test_mixing_is_measured_and_reads_are_one_per_shard():
    shard, offset, size = _table()
    rng = np.random.default_rng(0)
    perm = exact(rng, len(shard))
    mixed = interleave(rng, shard, offset, SHARDS)
    grouped = by_shard(rng, shard, SHARDS)
    spread = {name: shard_spread(o, shard)[0] for name, o in
              (("exact", perm), ("interleave", mixed), ("shard", grouped))}
    assert spread["exact"] > 55 and 12 < spread["interleave"] < 40 and spread["shard"] < 2.1
    plan = chunk_plan(shard[mixed], offset[mixed], size[mixed], coalesce=True)
    assert len(plan.uses) == SHARDS and plan.uses.sum() == len(shard)          # one ranged read per shard
    assert plan.peak_bytes <= 20 * PER * SPAN                                   # ~17 shards held, not 240
    whole = chunk_plan(shard[perm], offset[perm], size[perm], coalesce=True)
    assert whole.peak_bytes > 0.9 * SHARDS * PER * SPAN      # an exact permutation would hold the whole split
    single = chunk_plan(shard[perm], offset[perm], size[perm], coalesce=False)
    assert len(single.uses) == len(shard) and single.peak_bytes <= 64 * SPAN * 2
    assert np.array_equal(single.start[single.chunk], offset[perm])
