"""model.temporal: neighbour-frame attention inside open_clip's ViT blocks."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from model.clip import build_clip
from model.froster import VideoCLIP
from model.temporal import neighbour_attention, neighbour_mask, video_features


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    model, _ = build_clip("frostline-tiny", pretrained=None)
    return model.eval()


def _tokens(batch, frames, length=5, dim=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch * frames, length, dim, generator=g)


@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_one_frame_equals_plain_clip(clip, impl):
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = clip.encode_image(images)
        ours = video_features(clip.visual, images, frames=1, boundary="mask", impl=impl)
        video = VideoCLIP(clip, "neighbour", "mask", impl).encode_video(images.unsqueeze(1))
    torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(video[:, 0], F.normalize(plain, dim=-1), rtol=1e-5, atol=1e-5)


def test_frames_attend_to_their_neighbours_through_clip_own_attention(clip):
    """Frame t's output equals open_clip's nn.MultiheadAttention with keys/values = frames t-1, t, t+1 (those that
    exist), for the first, a middle and the last frame."""
    attn = clip.visual.transformer.resblocks[0].attn
    b, t, length = 2, 4, 5
    x = _tokens(b, t, length)
    with torch.no_grad():
        ours = neighbour_attention(attn, x, t, boundary="mask").view(b, t, length, -1)
        clips = x.view(b, t, length, -1)
        for frame in range(t):
            keys = clips[:, max(frame - 1, 0):frame + 2].flatten(1, 2)  # [B, (1..3)*L, D]
            expect = attn(clips[:, frame], keys, keys, need_weights=False)[0]
            torch.testing.assert_close(ours[:, frame], expect, rtol=1e-5, atol=1e-6)


def test_attention_sees_only_adjacent_frames(clip):
    attn = clip.visual.transformer.resblocks[0].attn
    b, t, length = 1, 5, 5
    x = _tokens(b, t, length)
    y = x.clone()
    y.view(b, t, length, -1)[:, 3] += 1.0  # perturb frame 3
    with torch.no_grad():
        a = neighbour_attention(attn, x, t).view(t, length, -1)
        c = neighbour_attention(attn, y, t).view(t, length, -1)
    changed = [(a[i] - c[i]).abs().max().item() > 1e-4 for i in range(t)]
    assert changed == [False, False, True, True, True]


def test_zero_padding_reference_mode(clip):
    """boundary='zeros': missing neighbours are unmasked zero keys/values; interior frames are unaffected."""
    attn = clip.visual.transformer.resblocks[0].attn
    b, t, length, heads = 2, 3, 5, attn.num_heads
    x = _tokens(b, t, length)
    with torch.no_grad():
        zeros = neighbour_attention(attn, x, t, boundary="zeros").view(b, t, length, -1)
        masked = neighbour_attention(attn, x, t, boundary="mask").view(b, t, length, -1)
        # by hand for frame 0: keys = [0 * L, frame 0, frame 1]
        q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(b, t, length, 3, heads, -1).unbind(3)
        kk = torch.cat([torch.zeros_like(k[:, 0]), k[:, 0], k[:, 1]], dim=1)  # [B, 3L, H, d]
        vv = torch.cat([torch.zeros_like(v[:, 0]), v[:, 0], v[:, 1]], dim=1)
        scores = torch.einsum("blhd,bkhd->bhlk", q[:, 0], kk) / q.shape[-1] ** 0.5
        out = torch.einsum("bhlk,bkhd->blhd", scores.softmax(-1), vv).flatten(2)
        expect = attn.out_proj(out)
    torch.testing.assert_close(zeros[:, 0], expect, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(zeros[:, 1], masked[:, 1], rtol=1e-5, atol=1e-6)
    assert (zeros[:, 0] - masked[:, 0]).abs().max() > 1e-3
    assert (zeros[:, 2] - masked[:, 2]).abs().max() > 1e-3


def test_mask_shape_and_content():
    m = neighbour_mask(batch=2, frames=3, length=2)
    assert m.shape == (6, 1, 1, 6)
    rows = m.view(2, 3, 6)
    assert rows[0, 0].tolist() == [False, False, True, True, True, True]
    assert rows[0, 1].all()
    assert rows[1, 2].tolist() == [True, True, True, True, False, False]


def test_sdpa_equals_math_and_checkpointing_keeps_values(clip):
    images = torch.randn(2 * 3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = video_features(clip.visual, images, 3, impl="sdpa")
        b = video_features(clip.visual, images, 3, impl="math")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    grads = []
    for ckpt in (False, True):
        clip.visual.set_grad_checkpointing(ckpt)
        clip.zero_grad()
        video_features(clip.visual, images, 3).square().sum().backward()
        grads.append(clip.visual.conv1.weight.grad.clone())
    clip.visual.set_grad_checkpointing(False)
    clip.zero_grad()
    assert (grads[0] - grads[1]).norm() <= 1e-5 * grads[1].norm()  # tolerance scaled to the gradient's norm


def test_no_new_parameters(clip):
    video = VideoCLIP(clip)
    assert list(video.state_dict()) == ["clip." + k for k in clip.state_dict()]


def test_bad_shapes_and_options(clip):
    with pytest.raises(ValueError, match="whole number"):
        neighbour_attention(clip.visual.transformer.resblocks[0].attn, _tokens(1, 5), frames=2)
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        VideoCLIP(clip).encode_video(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="boundary"):
        VideoCLIP(clip, boundary="wrap")
