"""Weights files as users have them: detect the format from the file, map its keys to open_clip's CLIP, report.

    w = read_weights("/models/froster_b2n_k400.pth", allow_torchscript=False)
    w.state_dict          # open_clip CLIP keys -> fp32 tensors (the student only)
    w.describe()          # one line for the start-up log: format, what was kept, left out, found
    name = match_architecture(w.state_dict, preferred="ViT-B-16")   # the open_clip config the tensors fit

| format (`kind`)   | recognised by                                         | kept / left out                              |
|-------------------|-------------------------------------------------------|----------------------------------------------|
| `openai`          | a TorchScript zip (``code/``, ``constants.pkl``)      | ``state_dict()`` minus input_resolution, context_length, vocab_size |
| `safetensors`     | an 8-byte header length, then JSON                    | every tensor                                 |
| `froster`         | ``{"model_state": {"model.*", "projector_v.*", ...}}``| ``model.*``; ``raw_model.*`` (the frozen teacher) left out; projectors reported |
| `open-vclip`      | ``{"model_state": {"model.*", ...}}``, no projectors  | as FROSTER                                   |
| `vifi-clip`       | ``{"model": {"image_encoder.*", "text_encoder.*"}}``  | both towers; the class-prompt buffers left out; the token table is not in the file (``missing``) |
| `open_clip`       | ``{"state_dict": ...}`` (open_clip, frostline exports)| everything; ``module.`` prefixes removed     |
| `state-dict`      | a plain ``{name: tensor}``                            | everything; ``module.`` prefixes removed     |

What the file implies about the model travels with it: OpenAI, FROSTER, Open-VCLIP and ViFi-CLIP weights were all
trained from OpenAI's CLIP, so QuickGELU; FROSTER and Open-VCLIP ran neighbour-frame attention whose missing
neighbours are zero tokens (``boundary="zeros"``); ViFi-CLIP averages per-frame features (``temporal="none"``).

Safety: a pickle can run code, so every pickle is read with ``torch.load(weights_only=True)``. Classes a
checkpoint names only in its metadata (ViFi-CLIP stores its yacs config object) are replaced while reading by an
inert stand-in that becomes an OrderedDict: nothing the file names is imported or called. A TorchScript archive
can only be opened by running its code, so it is opened only when the caller says the user named that path
(``allow_torchscript=True``).
"""
from __future__ import annotations

import logging
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model.architectures import register_configs

log = logging.getLogger(__name__)

OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")
QUICKGELU_KINDS = ("openai", "froster", "open-vclip", "vifi-clip")


class WeightsError(ValueError):
    """A weights file that cannot be used; the message names the file."""


# what the operating system says about a file it cannot give (reported as such, with its name, by shards.cli)
UNREADABLE = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


@dataclass
class LoadedWeights:
    """One weights file, read and mapped to open_clip's CLIP keys."""
    path: str
    kind: str                                   # see the table in the module docstring
    state_dict: dict[str, torch.Tensor]
    quick_gelu: bool | None = None              # None: the file does not say
    boundary: str | None = None                 # neighbour-frame boundary the weights were trained with
    temporal: str | None = None                 # "neighbour" | "none" when the file implies it
    model_name: str | None = None               # an open_clip name the file records (open_clip exports)
    projectors: dict[str, tuple[int, ...]] = field(default_factory=dict)  # FROSTER's residual projectors
    left_out: dict[str, int] = field(default_factory=dict)               # what was not kept: group -> tensors
    missing: list[str] = field(default_factory=list)                      # CLIP tensors the file lacks

    def describe(self) -> str:
        """What the file held: format, tensors kept, what was left out, found or missing (the model's settings
        are reported by the caller, model.clip.ClipInfo)."""
        parts = [f"{self.kind} weights, {len(self.state_dict)} tensors kept"]
        if self.model_name:
            parts.append(f"model_name {self.model_name}")
        for group, n in self.left_out.items():
            parts.append(f"left out {group}: {n} tensors")
        if self.projectors:
            parts.append("projectors found (training only, not loaded): "
                         + ", ".join(f"{k} {list(v)}" for k, v in self.projectors.items()))
        if self.missing:
            parts.append("not in the file: " + ", ".join(self.missing))
        return "; ".join(parts)


# ----------------------------------------------------------------------------------------------- reading files
def is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with compiled code (``code/``) and ``constants.pkl``; torch.save zips have
    neither."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < n < path.stat().st_size


class _Inert:
    """Stands in for a class a checkpoint names in its metadata: whatever it is called with, it becomes an empty
    OrderedDict, which the weights-only reader may then fill with plain items and attributes."""

    def __new__(cls, *args, **kwargs):
        return OrderedDict()


def _torch_load(path: Path):
    """torch.load(weights_only=True), with inert stand-ins for the non-tensor classes the file names."""
    stand_ins = []
    if zipfile.is_zipfile(path):
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        stand_ins = [(_Inert, name) for name in unsafe]
        if unsafe:
            log.info("%s: metadata objects read as plain mappings (not imported): %s", path, ", ".join(unsafe))
    with torch.serialization.safe_globals(stand_ins):
        return torch.load(path, map_location="cpu", weights_only=True)


def _only_tensors(sd, path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(sd, dict) or not sd:
        raise WeightsError(f"{path}: {what} is not a non-empty mapping of names to tensors")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{path}: {what} has non-tensor entries, e.g. {bad[0]!r}")
    return dict(sd)


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def _drop_openai_extras(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if k not in OPENAI_EXTRAS}


def _pyslowfast(path: str, sd: dict) -> LoadedWeights:
    """FROSTER / Open-VCLIP (PySlowFast ``model_state``): student ``model.*``, teacher ``raw_model.*``."""
    sd = _strip(sd, "module.")
    student = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    if not student:
        raise WeightsError(f"{path}: a PySlowFast checkpoint without model.* tensors (keys start with "
                           f"{sorted({k.split('.')[0] for k in sd})})")
    left_out: dict[str, int] = {}
    teacher = sum(k.startswith("raw_model.") for k in sd)
    if teacher:
        left_out["raw_model.* (the frozen teacher)"] = teacher
    projectors = {k: tuple(v.shape) for k, v in sd.items() if k.startswith(("projector_v.", "projector_t."))}
    other = sorted(k for k in sd if not k.startswith(("model.", "raw_model.", "projector_v.", "projector_t.")))
    if other:
        left_out[f"other tensors ({', '.join(other[:4])}{', ...' if len(other) > 4 else ''})"] = len(other)
    return LoadedWeights(path, "froster" if projectors else "open-vclip", _drop_openai_extras(student),
                         quick_gelu=True, boundary="zeros", temporal="neighbour", projectors=projectors,
                         left_out=left_out)


_VIFI_TEXT = ("transformer.", "positional_embedding", "ln_final.", "text_projection")


def _vifi_clip(path: str, sd: dict) -> LoadedWeights:
    """ViFi-CLIP (``{"model": ...}``): image_encoder.* is CLIP's visual tower, text_encoder.* holds the text
    transformer, positional embedding, final norm and projection; the token table stays outside the model."""
    sd = _strip(sd, "module.")
    if any(k == "prompt_learner.ctx" or ".VPT" in f".{k}" for k in sd):
        raise WeightsError(f"{path}: a prompt-learning ViFi-CLIP (learned text context or visual prompt tokens); "
                           f"only the fine-tuned ViFi-CLIP (no prompts) maps to a CLIP")
    out, left_out = {}, {}
    for k, v in sd.items():
        if k.startswith("image_encoder."):
            out["visual." + k[len("image_encoder."):]] = v
        elif k.startswith("text_encoder."):
            rest = k[len("text_encoder."):]
            if not rest.startswith(_VIFI_TEXT):
                raise WeightsError(f"{path}: unexpected ViFi-CLIP text tensor {k!r}")
            out[rest] = v
        elif k == "logit_scale":
            out[k] = v
        elif k.startswith("prompt_learner."):
            left_out["prompt_learner.* (class-prompt embeddings of the training classes)"] = \
                left_out.get("prompt_learner.* (class-prompt embeddings of the training classes)", 0) + 1
        else:
            raise WeightsError(f"{path}: unexpected ViFi-CLIP tensor {k!r}")
    return LoadedWeights(path, "vifi-clip", out, quick_gelu=True, temporal="none", left_out=left_out,
                         missing=["token_embedding.weight"])


def _from_object(path: str, obj) -> LoadedWeights:
    """Recognise a torch.load result by its keys."""
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict or a checkpoint mapping")
    if "model_state" in obj:
        return _pyslowfast(path, _only_tensors(obj["model_state"], path, "model_state"))
    if isinstance(obj.get("model"), dict) and any(
            k.startswith(("image_encoder.", "module.image_encoder.")) for k in obj["model"]):
        return _vifi_clip(path, _only_tensors(obj["model"], path, "model"))
    if "state_dict" in obj:
        sd = _strip(_only_tensors(obj["state_dict"], path, "state_dict"), "module.")
        name = obj.get("model_name") if isinstance(obj.get("model_name"), str) else None
        meta = obj.get("frostline") if isinstance(obj.get("frostline"), dict) else {}
        qg = meta.get("quick_gelu", True if name and "quickgelu" in name.lower() else None)
        return LoadedWeights(path, "open_clip", _drop_openai_extras(sd), quick_gelu=qg,
                             boundary=meta.get("boundary"), temporal=meta.get("temporal"), model_name=name)
    sd = _strip(_only_tensors(obj, path, "the file"), "module.")
    if any(k.startswith("model.visual.") for k in sd):  # a bare PySlowFast model_state
        return _pyslowfast(path, sd)
    return LoadedWeights(path, "state-dict", _drop_openai_extras(sd))


def _read(path: Path, allow_torchscript: bool) -> LoadedWeights:
    """The format-specific reading of read_weights (which turns a reader's failure into a WeightsError)."""
    if is_torchscript(path):
        if not allow_torchscript:
            raise WeightsError(f"{path} is a TorchScript archive (OpenAI's CLIP format); opening one runs its code, "
                               f"so frostline opens it only when you name its path yourself")
        log.info("%s: TorchScript archive, opened with torch.jit.load because its path was given", path)
        sd = torch.jit.load(str(path), map_location="cpu").state_dict()
        return LoadedWeights(str(path), "openai", _drop_openai_extras(dict(sd)), quick_gelu=True)
    if is_safetensors(path):
        from safetensors import safe_open
        from safetensors.torch import load_file
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        sd = _strip(load_file(str(path), device="cpu"), "module.")
        name = meta.get("model_name")
        return LoadedWeights(str(path), "safetensors", _drop_openai_extras(sd), model_name=name,
                             quick_gelu=True if name and "quickgelu" in name.lower() else None)
    return _from_object(str(path), _torch_load(path))


def read_weights(path: str | Path, *, allow_torchscript: bool = False) -> LoadedWeights:
    """Read any supported weights file (see the module docstring); tensors become fp32 on the CPU."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        w = _read(path, allow_torchscript)
    except (WeightsError, *UNREADABLE):
        raise
    except Exception as e:  # noqa: BLE001 - a damaged file fails in the readers' own classes (zip, safetensors, ...)
        raise WeightsError(f"{path}: not a weights file frostline can read safely "
                           f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e
    w.state_dict = {k: v.detach().float() if v.is_floating_point() else v for k, v in w.state_dict.items()}
    broken = [k for k, v in w.state_dict.items() if v.is_floating_point() and bool(torch.isnan(v).any())]
    if broken:  # a diverged run's weights: every prediction would be NaN, and accuracy a meaningless number
        raise WeightsError(f"{path}: NaN values in {len(broken)} tensor(s), e.g. {broken[0]} (weights of a "
                           f"diverged run?)")
    return w


# ------------------------------------------------------------------------------------------- the architecture
def _shapes(sd: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def _config_shapes(name: str) -> dict[str, tuple[int, ...]] | None:
    """The state-dict shapes of open_clip config `name`, built on the meta device (no memory, no init cost);
    None for configs that are not the built-in-text-tower CLIP frostline needs."""
    import open_clip
    cfg = open_clip.get_model_config(name)
    if not cfg or cfg.get("custom_text") or "hf_model_name" in cfg.get("text_cfg", {}) \
            or "timm_model_name" in cfg.get("vision_cfg", {}) or "multimodal_cfg" in cfg:
        return None
    try:
        with torch.device("meta"):
            model = open_clip.CLIP(**{k: v for k, v in cfg.items() if k in ("embed_dim", "vision_cfg", "text_cfg")})
    except Exception:
        return None
    return _shapes(model.state_dict())


def _signature(shapes: dict) -> tuple:
    """A cheap pre-filter: widths and depths that the tensors fix."""
    depth = lambda p: len({k.split(".")[3 if p else 2] for k in shapes if k.startswith(p + "transformer.resblocks.")})
    return (shapes.get("visual.conv1.weight"), shapes.get("text_projection"), shapes.get("token_embedding.weight"),
            depth("visual."), depth(""))


def match_architecture(state_dict: dict[str, torch.Tensor], preferred: str | None = None,
                       ignore: list[str] | tuple[str, ...] = ()) -> str:
    """The open_clip model name whose tensors have exactly these names and shapes: `preferred` when it fits, else
    the first fitting registered config (names without '-quickgelu' first; activations are set separately).

    Shapes do not fix the number of attention heads; every OpenAI-trained CLIP uses 64-wide heads, and so do
    open_clip's configs of the same widths, so the match is exact for them. A project config (frostline-tiny)
    is matched by name when it is `preferred`. Tensors named in `ignore` (those a file lacks) are not compared.
    """
    import open_clip
    register_configs()
    want = _shapes(state_dict)
    fits = lambda shapes: shapes is not None and {k: v for k, v in shapes.items() if k not in ignore} == want
    if preferred and preferred in open_clip.list_models() and fits(_config_shapes(preferred)):
        return preferred
    sig = _signature(want)
    names = sorted(open_clip.list_models(), key=lambda n: ("quickgelu" in n.lower(), n))
    for name in names:
        cfg = open_clip.get_model_config(name) or {}
        v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if not isinstance(v.get("width"), int) or v.get("width") != (sig[0] or (None,))[0]:
            continue
        if t.get("width") != (want.get("ln_final.weight") or (None,))[0]:
            continue
        if fits(_config_shapes(name)):
            return name
    visual = want.get("visual.conv1.weight")
    raise WeightsError(
        f"no open_clip CLIP config fits these weights (vision width {visual[0] if visual else '?'}, patch "
        f"{visual[-1] if visual else '?'}, {sig[3]} vision blocks, {sig[4]} text blocks, embed "
        f"{(want.get('text_projection') or (None, '?'))[1]}); "
        + (f"{preferred!r} does not fit either" if preferred else "name the model (model.clip / --clip)"))


def load_into(model: torch.nn.Module, w: LoadedWeights) -> None:
    """Copy `w` into an open_clip CLIP, strictly: every tensor of the model from the file, nothing left over."""
    sd = dict(w.state_dict)
    if "logit_scale" in sd and sd["logit_scale"].ndim != model.logit_scale.ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{w.path} ({w.kind}) does not fit the model: {e}") from None
