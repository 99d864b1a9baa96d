"""Build an open_clip CLIP from a name plus a pretrained tag or a local checkpoint, and encode text exactly
at any context length.

    model, tokenizer = build_clip("ViT-B-16", pretrained="openai")            # downloads (default path)
    model, tokenizer = build_clip("ViT-B-16", checkpoint="/ckpt/ViT-B-16.pt") # offline
    model, tokenizer = build_clip("frostline-tiny", pretrained=None)          # tiny, random init (tests, demo)

The project's own configs (model/model_configs/*.json) are registered with open_clip before building, so their
names work everywhere an open_clip name does.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_registered = False


def register_configs() -> list[str]:
    """Register model/model_configs/*.json with open_clip (once); return their names."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextmanager
def _weights_follow():
    """Silence open_clip's "initialized randomly" notice while building a model whose weights are loaded next."""
    notice, root = _DropRandomInitNotice(), logging.getLogger()
    root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)


def build_clip(
    name: str = "ViT-B-16",
    pretrained: str | None = "openai",
    checkpoint: str | os.PathLike | None = None,
    *,
    quick_gelu: bool | None = None,
    device: str | torch.device = "cpu",
) -> tuple[open_clip.CLIP, open_clip.tokenizer.SimpleTokenizer]:
    """Return (fp32 CLIP model, tokenizer).

    - `checkpoint` (a local file: an open_clip / OpenAI state dict, or a model exported by frostline) wins over
      `pretrained`; it is how offline machines load real weights.
    - `pretrained` is an open_clip tag ('openai', 'laion2b_s34b_b88k', ...) or None for random init.
    - `quick_gelu`: OpenAI's weights were trained with QuickGELU; None means "yes iff pretrained == 'openai'".
      For a local copy of OpenAI weights pass quick_gelu=True (or use the '-quickgelu' model name).
    """
    register_configs()
    if name not in open_clip.list_models():
        raise ValueError(f"unknown CLIP model {name!r}; known: frostline configs {register_configs()} "
                         f"and open_clip's list_models()")
    if quick_gelu is None:
        quick_gelu = checkpoint is None and pretrained == "openai"
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"CLIP checkpoint not found: {path}")
        with _weights_follow():
            model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu, device=device)
        try:
            open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
        except Exception as e:  # name the file: a wrong file is the usual cause
            raise RuntimeError(f"cannot load CLIP checkpoint {path} into {name!r}: {e}") from e
    else:
        try:
            model = open_clip.create_model(name, pretrained=pretrained, force_quick_gelu=quick_gelu, device=device)
        except Exception as e:
            raise RuntimeError(
                f"cannot build {name!r} with pretrained={pretrained!r} ({e}). Offline? Download the weights on a "
                f"connected machine and pass checkpoint=PATH (with quick_gelu=True for OpenAI weights).") from e
    if not isinstance(model, open_clip.CLIP):
        raise TypeError(f"{name!r} builds a {type(model).__name__}; frostline needs a CLIP with the built-in "
                        f"(causal, argmax-pooled) text tower")
    model.float()
    return model, open_clip.get_tokenizer(name)


def export_clip(state_dict: dict, path: str | os.PathLike, name: str) -> None:
    """Write a fine-tuned CLIP so that `build_clip(name, checkpoint=path)` and open_clip.load_checkpoint read it."""
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "model_name": name}, path)


def text_length(tokens: torch.Tensor, model: open_clip.CLIP) -> int:
    """The shortest context that encodes `tokens` exactly: up to the last end-of-text token in the batch.

    Exact because the text tower is causal (a position never sees later positions) and pools the end-of-text
    position; the padding after it cannot change the result. Models without both properties keep the full length.
    """
    if model.attn_mask is None or tokens.numel() == 0:
        return tokens.shape[-1]
    if model.text_pool_type == "argmax":
        last = tokens.argmax(dim=-1)
    elif model.text_pool_type == "eos" and model.text_eos_id is not None:
        last = (tokens == model.text_eos_id).int().argmax(dim=-1)
    else:
        return tokens.shape[-1]
    return int(last.max()) + 1


def encode_text(model: open_clip.CLIP, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """CLIP text features for tokens[N, L] with any L <= context length (open_clip's encode_text needs L == 77)."""
    n, length = tokens.shape
    if length > model.positional_embedding.shape[0]:
        raise ValueError(f"{length} tokens exceed the context length {model.positional_embedding.shape[0]}")
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=model.text_eos_id)
    if model.text_projection is not None:
        proj = model.text_projection
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return F.normalize(x, dim=-1) if normalize else x
