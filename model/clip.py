"""Build an open_clip CLIP from a name plus weights named like open_clip's `pretrained` (a tag or a path to any
format model.weights reads), and encode text exactly at any context length.

    model, tokenizer = build_clip("ViT-B-16", pretrained="openai")                  # hub, or its offline cache
    model, tokenizer = build_clip("ViT-B-16", "~/.cache/clip/ViT-B-16.pt")          # OpenAI's TorchScript file
    model, tok, info = load_clip(None, "/models/froster_b2n_k400.pth")              # architecture from the file
    model, tokenizer = build_clip("frostline-tiny", pretrained=None)                # tiny, random init (tests, demo)

`load_clip` also says what it found (`ClipInfo`: format, QuickGELU, the neighbour-frame boundary the weights were
trained with) and logs it once at start-up.

The project's own configs (model/model_configs/*.json) are registered with open_clip before building
(model.architectures), so their names work everywhere an open_clip name does.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool

from model.architectures import register_configs
from model.weights import LoadedWeights, WeightsError, load_into, match_architecture, read_weights

log = logging.getLogger(__name__)


class LoadError(ValueError, RuntimeError):
    """A CLIP that cannot be built as named: an unknown model name, a tag that cannot be loaded, a weights file
    that is unreadable or does not fit. Bad input, so one line at the entry point (shards.cli); a RuntimeError too,
    for callers that catch loading failures as such."""


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


@dataclass
class ClipInfo:
    """Where a built CLIP's weights came from and what they imply (see model.weights)."""
    source: str                        # "random" | "tag <tag>" | the weights file
    name: str                          # the open_clip architecture built
    quick_gelu: bool
    kind: str = "random"               # "random" | "tag" | a model.weights kind (openai, froster, ...)
    boundary: str | None = None        # neighbour-frame boundary the weights imply (FROSTER/Open-VCLIP: zeros)
    temporal: str | None = None        # "none" for ViFi-CLIP (per-frame features, averaged)
    weights: LoadedWeights | None = None

    def describe(self) -> str:
        what = self.weights.describe() if self.weights is not None else self.kind
        why = ""
        if self.weights is not None and self.weights.quick_gelu is not None:
            why = " (as the weights imply)" if self.weights.quick_gelu == self.quick_gelu else " (set by the caller)"
        implied = "; the weights imply " + ", ".join(
            f"{k} {v}" for k, v in (("boundary", self.boundary), ("temporal", self.temporal)) if v) \
            if (self.boundary or self.temporal) else ""
        return f"CLIP {self.name} from {self.source}: {what}; QuickGELU {'on' if self.quick_gelu else 'off'}{why}" \
               f"{implied}"


def is_weights_path(spec: str | os.PathLike) -> bool:
    """`pretrained` names a file (rather than an open_clip tag) when it is a PathLike, exists, or looks like a path."""
    if isinstance(spec, os.PathLike):
        return True
    s = str(spec)
    return os.path.exists(os.path.expanduser(s)) or "/" in s or os.sep in s or s.startswith("~") or \
        s.endswith((".pt", ".pth", ".pyth", ".bin", ".safetensors", ".ckpt"))


NAME_A_FILE = ("Name a weights file instead: --weights PATH (tools/predict.py, model/evaluate.py), "
               "model.pretrained=PATH (a training config).")


def check_tag_reachable(name: str, tag: str, timeout_s: float = 3.0) -> None:
    """Fail at once, naming the flag to pass, when the weights of open_clip tag `tag` are neither in the local
    caches nor downloadable: without this, an offline machine retries the hub for about a minute first."""
    import socket
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        return  # an unknown tag: open_clip's own error names the known ones
    repo = (cfg.get("hf_hub") or "").rstrip("/")
    if repo:
        from huggingface_hub import try_to_load_from_cache
        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo, filename), str):
                return
    url = cfg.get("url") or ""
    if url and os.path.isfile(os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))):
        return
    why = "HF_HUB_OFFLINE is set"
    if not os.environ.get("HF_HUB_OFFLINE"):
        try:
            socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
            return
        except OSError as e:
            why = f"the model hub cannot be reached ({e})"
    raise LoadError(f"CLIP {name} pretrained={tag!r}: the weights are not in the local cache and {why}. "
                       + NAME_A_FILE)


def load_clip(
    name: str | None = "ViT-B-16",
    pretrained: str | os.PathLike | None = "openai",
    *,
    quick_gelu: bool | None = None,
    base: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> tuple[open_clip.CLIP, open_clip.tokenizer.SimpleTokenizer, ClipInfo]:
    """Return (fp32 CLIP, tokenizer, what was loaded) for one way of naming weights, like open_clip's `pretrained`:

    - None: `name` randomly initialised (tests, the demo);
    - an open_clip tag ('openai', 'laion2b_s34b_b88k', ...): from the hub, or its cache with HF_HUB_OFFLINE=1;
    - a path: any format of model.weights, detected from the file. The architecture follows from the tensors
      (`name` is preferred when it fits, and may be None); a TorchScript archive is opened because the caller
      named it. A file that lacks tensors (ViFi-CLIP keeps the token table outside its model) takes them from
      `base` (default: OpenAI's weights of the same architecture, by tag).

    `quick_gelu`: None means what the weights imply (OpenAI, FROSTER, Open-VCLIP, ViFi-CLIP: yes; a tag: its
    pretrained config; otherwise: a '-quickgelu' name).
    """
    register_configs()
    if name is not None and name not in open_clip.list_models():
        raise LoadError(f"unknown CLIP model {name!r}; known: frostline configs {register_configs()} "
                         f"and open_clip's list_models()")
    if pretrained is None or not is_weights_path(pretrained):
        if name is None:
            raise LoadError("a CLIP model name is needed with a pretrained tag or random init")
        tag = None if pretrained is None else str(pretrained)
        if quick_gelu is None:
            cfg = open_clip.get_pretrained_cfg(name, tag) if tag else {}
            quick_gelu = bool(cfg.get("quick_gelu", False)) or tag == "openai"
        if tag is not None:
            check_tag_reachable(name, tag)
        try:
            with (_weights_follow() if tag is None else _nothing()):
                model = open_clip.create_model(name, pretrained=tag, force_quick_gelu=quick_gelu, device=device)
        except Exception as e:
            raise LoadError(f"cannot build {name!r} with pretrained={tag!r} ({' '.join(str(e).split())[:300]}). "
                            f"{NAME_A_FILE}") from e
        info = ClipInfo("random init" if tag is None else f"tag {tag}", name, quick_gelu, "random" if tag is None
                        else "tag")
    else:
        path = Path(pretrained).expanduser()
        try:
            w = read_weights(path, allow_torchscript=True)
            arch = match_architecture(w.state_dict, name or w.model_name, ignore=w.missing)
        except WeightsError as e:
            raise LoadError(f"cannot load CLIP weights: {e}" if str(path) in str(e) else
                            f"cannot load CLIP weights {path}: {e}") from e
        if w.missing:
            _fill_missing(w, arch, base)
        if quick_gelu is None:
            quick_gelu = w.quick_gelu if w.quick_gelu is not None else "quickgelu" in arch.lower()
        with _weights_follow():
            model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu, device=device)
        try:
            load_into(model, w)
        except WeightsError as e:
            raise LoadError(f"cannot load CLIP weights {path} into {arch!r}: {e}") from e
        if name is not None and arch != name:
            log.info("weights %s are %s-shaped; building %s (the configured %s does not fit)", path, arch, arch, name)
        name = arch
        info = ClipInfo(str(path), arch, quick_gelu, w.kind, w.boundary, w.temporal, w)
    if not isinstance(model, open_clip.CLIP):
        raise LoadError(f"{name!r} builds a {type(model).__name__}; frostline needs a CLIP with the built-in "
                        f"(causal, argmax-pooled) text tower")
    model.float()
    log.debug("%s", info.describe())  # the entry point reports it (model.build, model.inference)
    return model, open_clip.get_tokenizer(name), info


def _fill_missing(w: LoadedWeights, arch: str, base) -> None:
    """Take the tensors a file lacks from `base` (a tag, default 'openai', or a weights path)."""
    base = base or "openai"
    if is_weights_path(base):
        src = read_weights(base, allow_torchscript=True).state_dict
    else:
        try:
            src = open_clip.create_model(arch, pretrained=str(base)).state_dict()
        except Exception as e:
            raise LoadError(f"{w.path} ({w.kind}) lacks {', '.join(w.missing)}, which come from the CLIP it was "
                               f"trained from; loading {arch} pretrained={base!r} for them failed ({e}). Pass "
                               f"base=PATH (--base) to OpenAI's weights of that model.") from e
    for k in w.missing:
        if k not in src:
            raise LoadError(f"{w.path}: base weights {base} have no {k}")
        w.state_dict[k] = src[k].detach().float()
    log.info("%s: %s taken from %s", w.path, ", ".join(w.missing), base)
    w.missing = [f"{k} (from {base})" for k in w.missing]


@contextmanager
def _nothing():
    yield


def build_clip(
    name: str = "ViT-B-16",
    pretrained: str | os.PathLike | None = "openai",
    checkpoint: str | os.PathLike | None = None,
    *,
    quick_gelu: bool | None = None,
    device: str | torch.device = "cpu",
) -> tuple[open_clip.CLIP, open_clip.tokenizer.SimpleTokenizer]:
    """(fp32 CLIP, tokenizer): load_clip without the report. `checkpoint` is the older name of a path in
    `pretrained` (kept working; it wins when both are given)."""
    if checkpoint is not None:
        if not Path(checkpoint).expanduser().is_file():
            raise FileNotFoundError(f"CLIP checkpoint not found: {checkpoint}")
        pretrained = Path(checkpoint)
    model, tokenizer, _ = load_clip(name, pretrained, quick_gelu=quick_gelu, device=device)
    return model, tokenizer


def export_clip(state_dict: dict, path: str | os.PathLike, name: str, *, quick_gelu: bool | None = None,
                boundary: str | None = None, temporal: str | None = None) -> None:
    """Write a CLIP as open_clip's checkpoint format, ``{"state_dict", "model_name"}``, which
    `open_clip.create_model(model_name, pretrained=path)` and `load_clip(pretrained=path)` read. With QuickGELU,
    model_name gets open_clip's '-quickgelu' suffix where such a config exists, so plain open_clip builds the
    right activation; what frostline knows beyond that goes under "frostline"."""
    register_configs()
    if quick_gelu and "quickgelu" not in name.lower() and f"{name}-quickgelu" in open_clip.list_models():
        name = f"{name}-quickgelu"
    meta = {k: v for k, v in (("quick_gelu", quick_gelu), ("boundary", boundary), ("temporal", temporal))
            if v is not None}
    out = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "model_name": name}
    if meta:
        out["frostline"] = meta
    torch.save(out, path)


def uses_quick_gelu(model: open_clip.CLIP) -> bool:
    """Whether the model's MLPs use QuickGELU (OpenAI's activation)."""
    return any(isinstance(m, open_clip.transformer.QuickGELU) for m in model.modules())


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
