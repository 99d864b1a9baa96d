"""A Froster from a config: which CLIP, with which activation, checked against the data's crop size."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from model.config import Config
from model.froster import Froster

log = logging.getLogger(__name__)


def pretrained(cfg: Config) -> str | None:
    """The configured weights: model.pretrained, or its deprecated alias model.checkpoint when that is set."""
    if cfg.model.checkpoint is not None:
        log.warning("model.checkpoint is deprecated: name the file in model.pretrained (same meaning)")
        return cfg.model.checkpoint
    return cfg.model.pretrained


def quick_gelu(cfg: Config) -> bool | None:
    """OpenAI's CLIP weights use QuickGELU (the 'openai' tag, a '-quickgelu' name); for a weights file None lets
    the file decide (OpenAI, FROSTER, Open-VCLIP and ViFi-CLIP files are QuickGELU; see model.weights)."""
    if cfg.model.pretrained == "openai" or "quickgelu" in cfg.model.clip.lower():
        return True
    return None


def image_size(model: Froster) -> int:
    size = model.student.clip.visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else size


def check_crop(model: Froster, cfg: Config) -> None:
    """The ViT's positional embedding fixes the input size: fail early, naming the architecture the weights hold."""
    from model.fit import check, crop_problems
    check([p for p in crop_problems(cfg, image_size(model), model.clip_info.name) if p[0].startswith("data.crop")])


@contextmanager
def _quiet_open_clip():
    """open_clip logs each routine step of building a model at INFO on the root logger: shown with --verbose."""
    root = logging.getLogger()
    level = root.level
    if level == logging.INFO:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def build_model(cfg: Config, check: bool = True) -> Froster:
    """The training model: student and frozen teacher from the configured CLIP, plus the projectors. `check`:
    refuse a crop the CLIP does not take (model/train.py checks it with everything else, model.fit)."""
    m = cfg.model
    with _quiet_open_clip():
        model = Froster.build(m.clip, pretrained(cfg), alpha=m.alpha, distill_weight=m.distill_weight,
                              temporal=m.temporal, boundary=m.boundary, quick_gelu=quick_gelu(cfg),
                              prompt_style=m.prompts, distill_terms=m.distill_terms)
    _report(model, cfg)
    if check:
        check_crop(model, cfg)
    return model


def build_eval_model(cfg: Config, weights: Path | None) -> Froster:
    """zero-shot (weights None): the original CLIP as the frozen teacher; else the student CLIP from `weights`."""
    m = cfg.model
    with _quiet_open_clip():
        if weights is None:
            model = Froster.build(m.clip, pretrained(cfg), temporal=m.temporal, boundary=m.boundary,
                                  quick_gelu=quick_gelu(cfg), teacher=True, prompt_style=m.prompts,
                                  zero_shot_templates=cfg.eval.zero_shot_templates)
        else:
            model = Froster.build(m.clip, None, weights, temporal=m.temporal, boundary=m.boundary,
                                  quick_gelu=quick_gelu(cfg), teacher=False, prompt_style=m.prompts)
    _report(model, cfg)
    check_crop(model, cfg)
    return model


def boundary_reason(cfg: Config, implied: str | None) -> str:
    """Why the neighbour-frame boundary in use is the one it is: the official switch, model.boundary, the weights
    (a FROSTER or Open-VCLIP file: zeros), or the default (mask). The presets leave model.boundary unset."""
    m = cfg.model
    if m.boundary is None:
        return "as the weights imply" if implied else "the default (the weights imply none)"
    if m.fidelity == "official":
        return "model.fidelity=official"
    if implied and implied != m.boundary:
        return f"set by model.boundary, over the weights' {implied}"
    return "set by model.boundary"


def _report(model: Froster, cfg: Config) -> None:
    """Say once, at start-up, what the weights were and what they set (format, QuickGELU, boundary and why)."""
    s = model.student
    boundary = f", boundary {s.boundary} ({boundary_reason(cfg, model.clip_info.boundary)})" \
        if s.temporal == "neighbour" else ""
    log.info("%s; temporal %s%s", model.clip_info.describe(), s.temporal, boundary)
