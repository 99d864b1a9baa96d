"""Neighbour-frame temporal attention for open_clip's ViT ("expand temporal view").

A clip's T frames go through CLIP's image tower as B*T images. In every block, the queries of frame t attend to
the keys/values of frames t-1, t and t+1 (3x the tokens); everything else in the block is CLIP's own. It adds no
parameters, so the same CLIP weights load unchanged.

The first and last frames lack a neighbour. `boundary="mask"` (default) masks the missing keys, so a 1-frame clip
is exactly plain CLIP. `boundary="zeros"` reproduces the reference: the missing neighbour is zero key/value tokens
that stay unmasked (each adds exp(0) to the softmax denominator and nothing to the numerator).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

BOUNDARIES = ("mask", "zeros")
ATTN_IMPLS = ("sdpa", "math")


def _with_neighbours(x: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """[B*T, H, L, d] -> [B*T, H, 3L, d]: tokens of frames t-1, t, t+1 (zeros past either end)."""
    bt, h, length, d = x.shape
    x = x.view(batch, frames, h, length, d)
    zero = x.new_zeros(batch, 1, h, length, d)
    prev = torch.cat([zero, x[:, :-1]], dim=1)
    nxt = torch.cat([x[:, 1:], zero], dim=1)
    return torch.cat([prev, x, nxt], dim=3).view(bt, h, 3 * length, d)


def neighbour_mask(batch: int, frames: int, length: int, device=None) -> torch.Tensor:
    """bool [B*T, 1, 1, 3L], True = attend: hides the missing previous/next frame of the first/last frame."""
    keep = torch.ones(frames, 3, dtype=torch.bool, device=device)
    keep[0, 0] = False
    keep[-1, 2] = False
    keep = keep.repeat_interleave(length, dim=1)  # [T, 3L]
    return keep.expand(batch, frames, 3 * length).reshape(batch * frames, 1, 1, 3 * length)


def neighbour_attention(attn: nn.MultiheadAttention, x: torch.Tensor, frames: int, boundary: str = "mask",
                        impl: str = "sdpa") -> torch.Tensor:
    """Multi-head self-attention of x[B*T, L, D] (batch-first, already layer-normed) over neighbour frames,
    using `attn`'s own projection weights."""
    if not (isinstance(attn, nn.MultiheadAttention) and attn.batch_first and attn._qkv_same_embed_dim):
        raise TypeError("neighbour attention needs a batch-first nn.MultiheadAttention (open_clip's default ViT block)")
    bt, length, dim = x.shape
    if bt % frames:
        raise ValueError(f"{bt} images is not a whole number of {frames}-frame clips")
    batch, heads = bt // frames, attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(bt, length, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
    k, v = _with_neighbours(k, batch, frames), _with_neighbours(v, batch, frames)
    mask = neighbour_mask(batch, frames, length, x.device) if boundary == "mask" else None
    dropout = attn.dropout if attn.training else 0.0
    if impl == "sdpa":
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    elif impl == "math":  # what the reference does: explicit scores, softmax, weighted sum
        scores = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = F.dropout(scores.softmax(dim=-1), dropout, attn.training) @ v
    else:
        raise ValueError(f"impl must be one of {ATTN_IMPLS}, got {impl!r}")
    return attn.out_proj(out.transpose(1, 2).reshape(bt, length, dim))


def block_forward(block: nn.Module, x: torch.Tensor, frames: int, boundary: str = "mask",
                  impl: str = "sdpa") -> torch.Tensor:
    """open_clip's ResidualAttentionBlock.forward with the attention swapped for neighbour attention."""
    x = x + block.ls_1(neighbour_attention(block.attn, block.ln_1(x), frames, boundary, impl))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def video_features(visual: nn.Module, images: torch.Tensor, frames: int, boundary: str = "mask",
                   impl: str = "sdpa") -> torch.Tensor:
    """open_clip VisionTransformer.forward for images[B*T, 3, H, W] (clip-major) with neighbour attention in
    every block; returns the projected, unnormalised per-frame embeddings [B*T, D]."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if getattr(visual, "attn_pool", None) is not None or not visual.transformer.batch_first:
        raise TypeError("neighbour attention supports open_clip's standard ViT (token pooling, batch-first)")
    x = visual._embeds(images)
    ckpt = visual.transformer.grad_checkpointing and torch.is_grad_enabled()
    for block in visual.transformer.resblocks:
        if ckpt:
            x = checkpoint(block_forward, block, x, frames, boundary, impl, use_reentrant=False)
        else:
            x = block_forward(block, x, frames, boundary, impl)
    pooled, _ = visual._pool(x)
    return pooled @ visual.proj if visual.proj is not None else pooled
