"""FROSTER: a video CLIP student distilled from a frozen CLIP teacher through residual projectors.

API (stable; changes are listed here):

    model = Froster.build("ViT-B-16", "openai", checkpoint=None, alpha=0.1, distill_weight=2.0,
                          temporal="neighbour", boundary="mask")
    model.set_classes(texts, names=None)          # 28+1 templates tokenised; teacher text features cached;
                                                  # names: the name-only spelling of the 28-template baseline
    out = model(clips, labels)                    # FrosterOutput(loss, ce, distill_visual, distill_text, logits)
    logits = model.predict(clips)                 # eval: 29-template ensemble, text features cached per class set
    logits = model.predict(clips, zero_shot=True) # the frozen original CLIP, no temporal attention (baseline)
    model.student_state_dict()                    # the fine-tuned CLIP alone: what gets exported
    model.trainable_parameters()                  # student + projectors, never the teacher

clips are [B, T, 3, H, W] (CLIP-normalised), labels int64 [B] in the class set's order.
Extra build options (additions, nothing changed): attn_impl="sdpa"|"math", teacher=False (eval-only: no teacher,
no projectors), quick_gelu, grad_checkpointing, shard_text (class text split across DDP ranks), and the
reference-cost switches cache_teacher_text / truncate_text, and the official-code ones (model/fidelity.py):
prompt_style="official" (a description-less name repeated after the template) and zero_shot_templates=28 (the
official zero-shot baseline: 28 templates, class names only). forward(..., template=j) fixes the step's template.

Cost notes (issue 6): the teacher's text features never change, so set_classes computes them once; every class
prompt is cut to the longest real prompt of the class set (exact: see model.clip.text_length); the class text is
encoded once per step and shared by all clips. `cache_teacher_text=False, truncate_text=False` and
`attn_impl="math"` reproduce the reference's costs for the benchmark.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from model import prompts
from model.clip import encode_text, load_clip, text_length
from model.collective import broadcast_int, gather_rows, world_size
from model.loss import at_least_f32 as _f32
from model.loss import distill_loss, froster_loss  # noqa: F401  (distill_loss: public name, kept importable here)
from model.temporal import ATTN_IMPLS, BOUNDARIES, video_features

TEMPORAL = ("neighbour", "none")


class VideoCLIP(nn.Module):
    """A CLIP whose image tower sees clips: frames as B*T images, neighbour-frame attention in every block."""

    def __init__(self, clip: nn.Module, temporal: str = "neighbour", boundary: str = "mask", attn_impl: str = "sdpa"):
        super().__init__()
        if temporal not in TEMPORAL or boundary not in BOUNDARIES or attn_impl not in ATTN_IMPLS:
            raise ValueError(f"temporal in {TEMPORAL}, boundary in {BOUNDARIES}, attn_impl in {ATTN_IMPLS}; got "
                             f"{temporal!r}, {boundary!r}, {attn_impl!r}")
        self.clip, self.temporal, self.boundary, self.attn_impl = clip, temporal, boundary, attn_impl

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.clip.logit_scale

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """clips[B, T, 3, H, W] -> L2-normalised per-frame features [B, T, D]."""
        if clips.ndim != 5:
            raise ValueError(f"clips must be [B, T, 3, H, W], got shape {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        images = clips.flatten(0, 1).to(self.clip.visual.conv1.weight.dtype)
        if self.temporal == "none":
            feats = self.clip.visual(images)
        else:
            feats = video_features(self.clip.visual, images, t, self.boundary, self.attn_impl)
        return F.normalize(feats.view(b, t, -1), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens[N, L] (any L up to the context) -> L2-normalised features [N, D]."""
        return encode_text(self.clip, tokens, normalize=True)

    def logits(self, video_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
        """logit_scale.exp() * cosine, per frame, averaged over T: [B, T, D] x [C, D] -> [B, C]."""
        cos = torch.einsum("btd,cd->btc", video_feats, text_feats.to(video_feats.dtype))
        return self.clip.logit_scale.exp() * cos.mean(dim=1)


class ResidualProjector(nn.Module):
    """z + alpha * P(z), P = Linear -> GELU -> Linear (no biases). The second layer starts at zero, so at step 0
    the projected feature is the student's own."""

    def __init__(self, dim: int, alpha: float = 0.1):
        super().__init__()
        self.alpha = alpha
        self.fc1 = nn.Linear(dim, dim, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim, dim, bias=False)
        nn.init.kaiming_normal_(self.fc1.weight)
        nn.init.zeros_(self.fc2.weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.alpha * self.fc2(self.act(self.fc1(z)))


@dataclass
class FrosterOutput:
    loss: torch.Tensor
    ce: torch.Tensor
    distill_visual: torch.Tensor
    distill_text: torch.Tensor
    logits: torch.Tensor


class Froster(nn.Module):
    """Student VideoCLIP + frozen teacher CLIP + residual projectors; forward() returns the FROSTER loss
    (model/loss.py) of one training step."""

    def __init__(self, student: VideoCLIP, teacher: nn.Module | None, tokenizer, *, alpha: float = 0.1,
                 distill_weight: float = 2.0, cache_teacher_text: bool = True, truncate_text: bool = True,
                 shard_text: bool = False, prompt_style: str = "frostline", zero_shot_templates: int = 29,
                 distill_terms: str = "both"):
        super().__init__()
        self.student, self.tokenizer = student, tokenizer
        self.prompt_style, self.zero_shot_templates = prompt_style, zero_shot_templates  # model/prompts.py
        self.distill_weight, self.shard_text = distill_weight, shard_text
        self.distill_terms = distill_terms  # "both" | "visual" | "text" (ablations, model/loss.py)
        self.cache_teacher_text, self.truncate_text = cache_teacher_text, truncate_text
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)
            dim = student.clip.text_projection.shape[1]
            self.proj_v, self.proj_t = ResidualProjector(dim, alpha), ResidualProjector(dim, alpha)
        else:
            self.proj_v = self.proj_t = None
        self.class_texts: list[str] = []
        self.class_names: list[str] = []  # name-only spelling: the official zero-shot baseline's (set_classes)
        self._lengths: list[int] = []  # per template: tokens up to the last end-of-text of the class set
        self.register_buffer("tokens", torch.empty(0, 0, 0, dtype=torch.long), persistent=False)   # [29, C, L]
        self.register_buffer("teacher_text", torch.empty(0), persistent=False)  # [29, C, D] normalised
        self._eval_text: torch.Tensor | None = None
        self._zero_shot_text: torch.Tensor | None = None  # the 28-template baseline's class features (lazy)
        # Every buffer here is a constant that each rank computes identically (tokens, cached teacher text, causal
        # masks): DDP must not re-broadcast them every step (the teacher cache alone is 29*C*D floats).
        self._ddp_params_and_buffers_to_ignore = [name for name, _ in self.named_buffers()]

    @classmethod
    def build(cls, clip_name: str | None = "ViT-B-16", pretrained: str | None = "openai", checkpoint=None, *,
              alpha: float = 0.1, distill_weight: float = 2.0, temporal: str | None = None,
              boundary: str | None = None,
              attn_impl: str = "sdpa", teacher: bool = True, quick_gelu: bool | None = None,
              grad_checkpointing: bool = False, cache_teacher_text: bool = True, truncate_text: bool = True,
              shard_text: bool = False, prompt_style: str = "frostline", zero_shot_templates: int = 29,
              base=None, distill_terms: str = "both") -> "Froster":
        """Student and teacher both start as the same loaded CLIP. teacher=False builds an eval-only model
        (no teacher, no projectors: predict() only). `pretrained` is a tag or a weights path (model.clip.load_clip;
        `checkpoint`, the older name of a path, wins when given). temporal/boundary None: what the weights imply
        (a FROSTER checkpoint: zero-padded neighbours; ViFi-CLIP: no temporal attention), else neighbour/mask.
        `base` fills tensors a file lacks (ViFi-CLIP's token table). What was loaded is kept in `clip_info`."""
        clip, tokenizer, info = load_clip(clip_name, checkpoint if checkpoint is not None else pretrained,
                                          quick_gelu=quick_gelu, base=base)
        frozen = copy.deepcopy(clip) if teacher else None
        clip.set_grad_checkpointing(grad_checkpointing)
        model = cls(VideoCLIP(clip, temporal or info.temporal or "neighbour", boundary or info.boundary or "mask",
                              attn_impl), frozen, tokenizer, alpha=alpha, distill_weight=distill_weight,
                    cache_teacher_text=cache_teacher_text, truncate_text=truncate_text, shard_text=shard_text,
                    prompt_style=prompt_style, zero_shot_templates=zero_shot_templates,
                    distill_terms=distill_terms)
        model.clip_info = info
        return model

    # -- classes and text -------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_texts)

    def _device(self) -> torch.device:
        return self.student.clip.logit_scale.device

    def _cut(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[..., :text_length(tokens.flatten(0, -2), self.student.clip)] if self.truncate_text else tokens

    @torch.no_grad()
    def set_classes(self, class_texts: list[str], chunk: int = 1024, names: list[str] | None = None) -> None:
        """Tokenise the 29 prompts of every class; cache the teacher's text features for all of them. `names`: the
        classes' name-only spelling for the 28-template zero-shot baseline (default: each text's Name part)."""
        if not class_texts:
            raise ValueError("set_classes needs at least one class text")
        if names is not None and len(names) != len(class_texts):
            raise ValueError(f"{len(names)} names for {len(class_texts)} class texts")
        self.class_texts = list(class_texts)
        self.class_names = list(names) if names is not None else [prompts.split_text(c)[0] for c in class_texts]
        table = prompts.prompt_table(self.class_texts, official=self.prompt_style == "official")
        tokens = prompts.tokenize(self.tokenizer, table, self.class_texts)  # a prompt past 77 tokens: an error
        # each template's exact length, once, on the host: no device sync in the training step
        self._lengths = [text_length(t, self.student.clip) if self.truncate_text else t.shape[-1] for t in tokens]
        self.tokens = tokens[..., :max(self._lengths)].to(self._device())
        self._eval_text = self._zero_shot_text = None
        if self.teacher is not None:
            feats = [encode_text(self.teacher, self._cut(t)) for t in self.tokens.flatten(0, 1).split(chunk)]
            self.teacher_text = _f32(torch.cat(feats).view(*self.tokens.shape[:2], -1))

    def _pair_length(self, template: int) -> int:
        return max(self._lengths[template], self._lengths[prompts.BARE_INDEX])

    def _pair_tokens(self, template: int) -> torch.Tensor:
        """[2C, L]: the step's template and the bare text, cut to the longer of the two."""
        length = self._pair_length(template)
        return torch.cat([self.tokens[template, :, :length], self.tokens[prompts.BARE_INDEX, :, :length]])

    def _student_class_text(self, template: int) -> torch.Tensor:
        """Normalised mean of (template, bare) student features per class [C, D], with gradients."""
        c = self.num_classes
        if self.shard_text and world_size() > 1:
            world, rank = world_size(), dist.get_rank()
            per = -(-c // world)
            idx = torch.arange(rank * per, (rank + 1) * per, device=self._device()).clamp(max=c - 1)
            pair = torch.stack([self.tokens[template][idx], self.tokens[prompts.BARE_INDEX][idx]])
            feats = self.student.encode_text(pair.flatten(0, 1)[:, :self._pair_length(template)]).view(2, per, -1)
            mine = F.normalize(feats[0] + feats[1], dim=-1)
            return gather_rows(mine)[:c]
        feats = self.student.encode_text(self._pair_tokens(template))
        return F.normalize(feats[:c] + feats[c:], dim=-1)

    def _teacher_class_text(self, template: int) -> torch.Tensor:
        c = self.num_classes
        if self.cache_teacher_text:
            pair = torch.stack([self.teacher_text[template], self.teacher_text[prompts.BARE_INDEX]])
        else:  # the reference: re-encode the frozen teacher's text every step
            with torch.no_grad():
                pair = encode_text(self.teacher, self._pair_tokens(template)).view(2, c, -1)
        return F.normalize(_f32(pair[0]) + _f32(pair[1]), dim=-1)

    def _pick_template(self) -> int:
        template = prompts.sample_template()
        if self.shard_text and world_size() > 1:
            template = broadcast_int(template, self._device())  # every rank must encode the same template
        return template

    # -- training -----------------------------------------------------------------------------------------------
    def forward(self, clips: torch.Tensor, labels: torch.Tensor, template: int | None = None) -> FrosterOutput:
        """One training step's loss. `template` (0..27) defaults to a random one from torch's global RNG."""
        if self.teacher is None:
            raise RuntimeError("this Froster was built with teacher=False (eval only); forward needs the teacher")
        if not self.class_texts:
            raise RuntimeError("call set_classes(class_texts) before forward")
        if labels.device.type == "cpu" and labels.numel() and (  # on GPUs: no host sync in the hot path
                int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")
        template = self._pick_template() if template is None else template
        zt = self._student_class_text(template)                       # [C, D]
        zv = self.student.encode_video(clips)                         # [B, T, D]
        logits = self.student.logits(zv, zt)                          # features before the projectors
        tv, tt = self.teacher_video(clips), self._teacher_class_text(template)
        terms = froster_loss(logits, labels, self.proj_v(zv), tv, self.proj_t(zt), tt, self.distill_weight,
                             self.distill_terms)
        return FrosterOutput(terms.loss, terms.ce, terms.distill_visual, terms.distill_text, logits)

    @torch.no_grad()
    def teacher_video(self, clips: torch.Tensor) -> torch.Tensor:
        """The frozen CLIP's L2-normalised per-frame features [B, T, D]: frames as images, no temporal attention."""
        b, t = clips.shape[:2]
        images = clips.flatten(0, 1).to(self.teacher.visual.conv1.weight.dtype)
        return F.normalize(self.teacher.visual(images).view(b, t, -1), dim=-1)

    def train(self, mode: bool = True) -> "Froster":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # always: the teacher is a fixed function
        if mode:
            self._eval_text = None  # the student will change
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._eval_text = self._zero_shot_text = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- evaluation ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def class_features(self, zero_shot: bool = False, chunk: int = 1024) -> torch.Tensor:
        """[C, D] normalised ensemble of the 29 prompts per class (student, or teacher when zero_shot)."""
        if not self.class_texts:
            raise RuntimeError("call set_classes(class_texts) before predict")
        if zero_shot:
            if self.teacher is None:
                raise RuntimeError("zero_shot needs the teacher (build with teacher=True)")
            if self.zero_shot_templates == len(prompts.TEMPLATES):  # the official baseline: names, 28 templates
                if self._zero_shot_text is None:
                    table = prompts.zero_shot_table(self.class_names)
                    tokens = prompts.tokenize(self.tokenizer, table, self.class_names).to(self._device())
                    flat = tokens.flatten(0, 1)
                    feats = torch.cat([encode_text(self.teacher, self._cut(t)) for t in flat.split(chunk)]).float()
                    self._zero_shot_text = F.normalize(feats.view(*tokens.shape[:2], -1).mean(0), dim=-1)
                return self._zero_shot_text
            return F.normalize(self.teacher_text.mean(0), dim=-1)
        if self._eval_text is not None and not self.training:
            return self._eval_text
        flat = self.tokens.flatten(0, 1)
        feats = torch.cat([self.student.encode_text(self._cut(t)) for t in flat.split(chunk)]).float()
        text = F.normalize(feats.view(*self.tokens.shape[:2], -1).mean(0), dim=-1)
        if not self.training:
            self._eval_text = text
        return text

    @torch.no_grad()
    def predict(self, clips: torch.Tensor, zero_shot: bool = False) -> torch.Tensor:
        """logits [B, C]. zero_shot=True: the frozen original CLIP (teacher), frames averaged, no temporal attention."""
        text = self.class_features(zero_shot)
        if zero_shot:
            cos = torch.einsum("btd,cd->btc", self.teacher_video(clips).float(), text)
            return self.teacher.logit_scale.exp() * cos.mean(dim=1)
        return self.student.logits(self.student.encode_video(clips), text).float()

    # -- parameters and export ----------------------------------------------------------------------------------
    def named_trainable_parameters(self):
        """(name, parameter) of the student and the projectors; never the teacher."""
        for name, p in self.named_parameters():
            if p.requires_grad and not name.startswith("teacher."):
                yield name, p

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_trainable_parameters()]

    def student_state_dict(self) -> dict[str, torch.Tensor]:
        """The fine-tuned CLIP alone, with open_clip's keys (loads with build_clip(name, checkpoint=...))."""
        return self.student.clip.state_dict()
