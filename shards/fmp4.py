"""Gather from a fragmented MP4 only the bytes a clip needs: the init segment, then for each fragment that holds a
sampled frame, that fragment cut right after its last sampled frame.

A stored stream (`shards.transcode`, fragmented MP4) is `ftyp moov` (the init segment) followed by one
`moof mdat` pair per keyframe interval; `moof/traf/trun` lists the fragment's samples (sizes, first-sample
flags) and `mdat` holds their bytes in decode order. A decoder handed `init + fragment a + fragment b + ...`
decodes the listed fragments one after another: each starts at a keyframe and, with `default-base-is-moof`
(the `tfhd` flag the transcoder writes), each `trun` addresses its samples relative to its own `moof`, so
fragments taken from anywhere in the stream, in any increasing order, make a valid stream. The decode times
(`tfdt`) jump between them; FFmpeg and DALI's decoders follow decode order and do not mind (pinned by the tests,
pixel for pixel against decoding the whole stream).

Cutting a fragment after sample j rewrites three boxes and drops bytes, nothing else:

* `trun`: sample_count = j + 1, the per-sample entries after j dropped;
* `trun.data_offset` (from the `moof` start to the first sample's bytes) shrinks by the bytes the entries took,
  and the sizes of `trun`, `traf`, `moof` shrink by the same amount;
* `mdat`: its size covers only the bytes of samples 0..j, the rest is dropped.

The decoder then decodes exactly the frames it is handed: for each sampled frame, from the keyframe before it up
to it, and a frame shared by several views or a fragment shared by several sampled frames once. With keyframe
interval k and T frames more than k apart that is about T * (1 + (k - 1) / 2) decoded frames per clip, against
the whole window (plus the frames before it since its keyframe) when the stream is cut once before the clip.

A fragment this module cannot cut exactly (several tracks or runs, per-sample boxes such as `sdtp` or `senc`,
absolute `base_data_offset`, sample sizes it cannot find) is not guessed at: `gather` raises `FragmentError`,
naming the fragment, and callers decode such a stream whole.

Planning (`plan`) is numpy over a whole batch at once: (stream, frame) pairs are packed into one sorted int64
key, so one `searchsorted` finds every wanted frame's fragment and one `unique` the fragments to keep.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# trun flags (ISO/IEC 14496-12, 8.8.8) and the bytes each present field adds to a per-sample entry
_DATA_OFFSET, _FIRST_FLAGS = 0x1, 0x4
_SAMPLE_FIELDS = ((0x100, "duration"), (0x200, "size"), (0x400, "flags"), (0x800, "cto"))
# tfhd flags (8.8.7)
_BASE_OFFSET, _DESC, _DEF_DURATION, _DEF_SIZE, _DEF_FLAGS = 0x1, 0x2, 0x8, 0x10, 0x20
_BASE_IS_MOOF = 0x20000

Reader = Callable[[Sequence[tuple[int, int]]], Sequence[bytes]]


class FragmentError(ValueError):
    """A fragment whose layout this module does not cut; the message names its byte offset and what is wrong."""


# ---------------------------------------------------------------------------------------------- planning


@dataclass
class Plan:
    """Which fragments to hand the decoder and where the wanted frames land, for one stream or a batch of streams.

    `stream`, `fragment`, `keep` have one entry per gathered fragment, grouped by stream and in stream order;
    `positions` has the shape of the wanted frames and indexes the frames of its own stream's gathered bytes.
    """

    stream: np.ndarray      # int64 [G]: row of the batch the fragment belongs to
    fragment: np.ndarray    # int64 [G]: the fragment's index in its stream's table
    keep: np.ndarray        # int64 [G]: samples kept from the fragment (it is cut after sample keep - 1)
    positions: np.ndarray   # int32 [S, M] (or [M] for one stream): each wanted frame's index in the gathered stream

    def decoded_frames(self, num_streams: int | None = None) -> np.ndarray:
        """Frames the decoder decodes for each stream: everything it is handed."""
        n = int(self.stream.max()) + 1 if num_streams is None and len(self.stream) else (num_streams or 0)
        return np.bincount(self.stream, weights=self.keep, minlength=n).astype(np.int64)

    def of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(fragment indices, samples kept) of one stream of the batch."""
        sel = self.stream == row
        return self.fragment[sel], self.keep[sel]


def plan(fragment_frames: Sequence[Sequence[int]] | np.ndarray, wanted: np.ndarray) -> Plan:
    """The gather plan for wanted frames (int [S, M], any order, repeats allowed) of S streams whose fragments start
    at the frames `fragment_frames[s]` (increasing, starting at 0). A 1-D `wanted` with one table is one stream.

    Frames before a stream's first fragment or past its last frame are the caller's business (the samplers clamp
    indices to [0, n - 1]); a frame past the last fragment's start falls in the last fragment.
    """
    wanted = np.asarray(wanted, np.int64)
    single = wanted.ndim == 1
    if single:
        wanted, fragment_frames = wanted[None], [fragment_frames]
    S, M = wanted.shape
    if len(fragment_frames) != S:
        raise ValueError(f"{S} rows of wanted frames but {len(fragment_frames)} fragment tables")
    counts = np.fromiter((len(f) for f in fragment_frames), np.int64, S)
    if np.any(counts == 0):
        raise ValueError(f"row {int(np.flatnonzero(counts == 0)[0])}: empty fragment table")
    first = np.concatenate([np.asarray(f, np.int64) for f in fragment_frames])
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    owner = np.repeat(np.arange(S, dtype=np.int64), counts)
    table_key = owner << 32 | first
    key = np.arange(S, dtype=np.int64)[:, None] << 32 | np.maximum(wanted, 0)
    flat = np.searchsorted(table_key, key, side="right") - 1            # each wanted frame's fragment (flat index)
    flat = np.maximum(flat, start[:, None])                             # a frame before fragment 0 -> fragment 0
    # one entry per distinct (stream, frame): the last wanted frame of each fragment says where to cut it
    ukey, first_seen = np.unique(key.ravel(), return_index=True)
    ufrag = flat.ravel()[first_seen]
    last = np.flatnonzero(np.r_[ufrag[1:] != ufrag[:-1], True])         # ukey is sorted, so ufrag is too
    g_flat = ufrag[last]
    keep = (ukey[last] & 0xFFFFFFFF) - first[g_flat] + 1
    g_stream = owner[g_flat]
    # position = frames gathered before the fragment (within its stream) + offset inside the fragment
    before = np.cumsum(keep) - keep
    stream_base = before[np.searchsorted(g_stream, g_stream)]            # `before` of the stream's first fragment
    where = np.searchsorted(g_flat, flat)                                # each wanted frame's gathered fragment
    positions = (before - stream_base)[where] + (np.maximum(wanted, 0) - first[flat])
    return Plan(stream=g_stream, fragment=g_flat - start[g_stream], keep=keep,
                positions=(positions[0] if single else positions).astype(np.int32))


# ---------------------------------------------------------------------------------------------- boxes


def _box(data, pos: int, end: int) -> tuple[str, int, int]:
    """(type, header size, box size) of the box at `pos`; errors name the offset."""
    if pos + 8 > end:
        raise FragmentError(f"truncated box header at byte {pos}")
    size, kind = struct.unpack_from(">I4s", data, pos)
    header = 8
    if size == 1:
        if pos + 16 > end:
            raise FragmentError(f"truncated box header at byte {pos}")
        size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
    elif size == 0:
        size = end - pos
    if size < header or pos + size > end:
        raise FragmentError(f"box {kind!r} at byte {pos} runs past its container ({size} bytes)")
    return kind.decode("latin-1"), header, size


def _children(data, start: int, end: int):
    pos = start
    while pos < end:
        kind, header, size = _box(data, pos, end)
        yield kind, pos, header, size
        pos += size


@dataclass
class _Layout:
    """Where a fragment's cut-relevant fields are, relative to the fragment's first byte (its moof)."""

    moof_size: int
    traf: int                 # offset of traf
    trun: int                 # offset of trun
    trun_end: int
    entries: int              # offset of the first per-sample entry
    entry_size: int           # bytes per per-sample entry
    count: int                # sample_count
    sizes: tuple[int, ...]    # [count]: sample sizes
    data_offset: int          # from the moof start to sample 0's bytes
    count_at: int             # offset of the sample_count field
    data_offset_at: int       # offset of the data_offset field
    mdat: int                 # offset of the mdat box
    mdat_header: int
    mdat_size: int


def _layout(frag: bytes, where: int) -> _Layout:
    """Parse one `moof mdat` pair starting at frag[0]; `where` (its offset in the stream) only names it in errors."""
    end = len(frag)
    kind, mh, moof_size = _box(frag, 0, end)
    if kind != "moof":
        raise FragmentError(f"fragment at byte {where}: expected a moof box, found {kind!r}")
    trafs = [(p, h, s) for k, p, h, s in _children(frag, mh, moof_size) if k == "traf"]
    if len(trafs) != 1:
        raise FragmentError(f"fragment at byte {where}: {len(trafs)} track fragments (one video track expected)")
    tp, th, ts = trafs[0]
    tfhd = trun = None
    for k, p, h, s in _children(frag, tp + th, tp + ts):
        if k == "tfhd":
            tfhd = (p, h)
        elif k == "trun":
            if trun is not None:
                raise FragmentError(f"fragment at byte {where}: several trun boxes")
            trun = (p, h, s)
        elif k != "tfdt":        # sdtp, sbgp, senc, saiz, ... carry per-sample data this cut would not trim
            raise FragmentError(f"fragment at byte {where}: traf holds a {k!r} box")
    if tfhd is None or trun is None:
        raise FragmentError(f"fragment at byte {where}: traf without tfhd or trun")
    fp, fh = tfhd
    tf_flags = struct.unpack_from(">I", frag, fp + fh)[0] & 0xFFFFFF
    if tf_flags & _BASE_OFFSET or not tf_flags & _BASE_IS_MOOF:
        raise FragmentError(f"fragment at byte {where}: sample data not addressed from its moof "
                            f"(tfhd flags {tf_flags:#x})")
    q = fp + fh + 8                                          # after version/flags and track_ID
    q += 4 if tf_flags & _DESC else 0
    q += 4 if tf_flags & _DEF_DURATION else 0
    default_size = struct.unpack_from(">I", frag, q)[0] if tf_flags & _DEF_SIZE else None
    rp, rh, rs = trun
    flags_word, count = struct.unpack_from(">II", frag, rp + rh)
    flags = flags_word & 0xFFFFFF
    if not flags & _DATA_OFFSET:
        raise FragmentError(f"fragment at byte {where}: trun without data_offset")
    data_offset_at = rp + rh + 8
    data_offset = struct.unpack_from(">i", frag, data_offset_at)[0]
    entries = data_offset_at + 4 + (4 if flags & _FIRST_FLAGS else 0)
    fields = [name for bit, name in _SAMPLE_FIELDS if flags & bit]
    entry_size = 4 * len(fields)
    if entries + entry_size * count != rp + rs:
        raise FragmentError(f"fragment at byte {where}: trun size does not match its {count} samples")
    if "size" in fields:
        table = struct.unpack_from(f">{count * len(fields)}I", frag, entries)
        sizes = table[fields.index("size")::len(fields)]
    elif default_size is not None:
        sizes = (default_size,) * count
    else:
        raise FragmentError(f"fragment at byte {where}: no sample sizes in trun or tfhd")
    kind, dh, ds = _box(frag, moof_size, end)
    if kind != "mdat":
        raise FragmentError(f"fragment at byte {where}: moof followed by {kind!r}, not mdat")
    if data_offset < moof_size + dh or data_offset + sum(sizes) > moof_size + ds:
        raise FragmentError(f"fragment at byte {where}: sample data outside its mdat")
    return _Layout(moof_size=moof_size, traf=tp, trun=rp, trun_end=rp + rs, entries=entries, entry_size=entry_size,
                   count=count, sizes=sizes, data_offset=data_offset, count_at=rp + rh + 4,
                   data_offset_at=data_offset_at, mdat=moof_size, mdat_header=dh, mdat_size=ds)


def _resize_box(buf: bytearray, pos: int, shrink: int) -> None:
    size = struct.unpack_from(">I", buf, pos)[0]
    if size == 1:
        struct.pack_into(">Q", buf, pos + 8, struct.unpack_from(">Q", buf, pos + 8)[0] - shrink)
    else:
        struct.pack_into(">I", buf, pos, size - shrink)


def cut_fragment(frag: bytes, keep: int, where: int = 0) -> bytes:
    """The fragment `frag` (a `moof mdat` pair, anything after the mdat ignored) holding only its first `keep`
    samples. `keep` >= the fragment's sample count returns the pair unchanged."""
    lay = _layout(frag, where)
    if keep < 1:
        raise ValueError(f"fragment at byte {where}: keep must be >= 1, got {keep}")
    end_pair = lay.mdat + lay.mdat_size
    if keep >= lay.count:
        return bytes(frag[:end_pair])
    shrink = (lay.count - keep) * lay.entry_size
    data_end = lay.data_offset + sum(lay.sizes[:keep])
    cut_at = lay.entries + keep * lay.entry_size           # first dropped trun entry
    out = bytearray(frag[:cut_at])
    out += frag[lay.trun_end:lay.mdat]                      # boxes after the trun in the moof (tfdt, ...)
    out += frag[lay.mdat:data_end]
    for box in (0, lay.traf, lay.trun):                    # moof, traf, trun all contain the dropped entries
        _resize_box(out, box, shrink)
    struct.pack_into(">I", out, lay.count_at, keep)
    struct.pack_into(">i", out, lay.data_offset_at, lay.data_offset - shrink)
    mdat = lay.mdat - shrink
    _resize_box(out, mdat, lay.mdat_size - (data_end - lay.mdat))
    return bytes(out)


# ---------------------------------------------------------------------------------------------- gathering


def ranges(fragment_offsets: Sequence[int], size: int, fragments: np.ndarray) -> list[tuple[int, int]]:
    """The byte ranges [start, stop) of a stream to read for `fragments`: the init segment, then each fragment
    whole (up to the next fragment, or the stream's end). Adjacent ranges are merged."""
    offsets = np.asarray(fragment_offsets, np.int64)
    ends = np.r_[offsets[1:], size]
    spans = [(0, int(offsets[0]))] + [(int(offsets[f]), int(ends[f])) for f in fragments]
    merged = [spans[0]]
    for a, b in spans[1:]:
        if a == merged[-1][1]:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def gather(source, fragment_offsets: Sequence[int], size: int, fragments: np.ndarray,
           keep: np.ndarray) -> bytes:
    """The gathered stream: init + each of `fragments` (increasing) cut after `keep` samples.

    `source` is the stream's bytes (any buffer: bytes, memoryview, uint8 array), or a reader called once with the
    list of byte ranges to fetch (the init segment and the needed fragments, adjacent ones merged; see `ranges`),
    returning their bytes in order, so a caller reading from storage fetches only those ranges, all at once.
    `size` is the stream's length."""
    offsets = np.asarray(fragment_offsets, np.int64)
    fragments = np.asarray(fragments, np.int64)
    if len(fragments) and (np.any(np.diff(fragments) <= 0) or fragments[0] < 0 or fragments[-1] >= len(offsets)):
        raise ValueError(f"fragments must be increasing indices below {len(offsets)}, got {fragments.tolist()}")
    ends = np.r_[offsets[1:], size]
    if not callable(source):
        view = memoryview(source).cast("B")
        init = view[:offsets[0]]
        pieces = [view[offsets[f]:ends[f]] for f in fragments]
    else:
        spans = ranges(offsets, size, fragments)
        blobs = source(spans)
        if len(blobs) != len(spans):
            raise ValueError(f"reader returned {len(blobs)} blobs for {len(spans)} ranges")
        starts = np.array([a for a, _ in spans], np.int64)

        def piece(a: int, b: int):
            i = int(np.searchsorted(starts, a, side="right")) - 1
            return memoryview(blobs[i])[a - starts[i]:b - starts[i]]

        init = piece(0, int(offsets[0]))
        pieces = [piece(int(offsets[f]), int(ends[f])) for f in fragments]
    out = [bytes(init)]
    for f, k, p in zip(fragments.tolist(), np.asarray(keep).tolist(), pieces):
        out.append(cut_fragment(p, int(k), where=int(offsets[f])))
    return b"".join(out)


def gather_batch(streams: Sequence, fragment_offsets: Sequence[Sequence[int] | None],
                 fragment_frames: Sequence[Sequence[int] | None], wanted: np.ndarray
                 ) -> tuple[list[bytes], np.ndarray, np.ndarray, np.ndarray]:
    """Gather a batch: stream i (a buffer) with its fragment table, wanted frames `wanted[i]` ([S, M]).

    Returns (gathered streams, positions int32 [S, M], decoded frames int64 [S], whole bool [S]). A stream without a
    fragment table, or with a fragment `cut_fragment` refuses (`FragmentError`), is passed whole: its positions are
    its wanted frames and `whole` says so, so the caller can count it."""
    wanted = np.asarray(wanted, np.int64)
    S = len(streams)
    has = np.array([o is not None and len(o) > 0 for o in fragment_offsets], bool)
    positions = wanted.astype(np.int32)
    decoded = (wanted.max(axis=1) + 1) if wanted.size else np.zeros(S, np.int64)   # a whole stream: 0..last
    out: list = list(streams)
    if has.any():
        rows = np.flatnonzero(has)
        p = plan([fragment_frames[i] for i in rows], wanted[rows])
        counts = p.decoded_frames(len(rows))
        for j, i in enumerate(rows.tolist()):
            frag, keep = p.of(j)
            try:
                out[i] = gather(streams[i], fragment_offsets[i], len(memoryview(streams[i]).cast("B")), frag, keep)
            except FragmentError:
                has[i] = False
                continue
            positions[i], decoded[i] = p.positions[j], counts[j]
    return out, positions, decoded, ~has
