"""The official switch: `model.fidelity=official` turns on, together, every behaviour of the official FROSTER code
(github Visual-AI/FROSTER) that frostline's defaults change on purpose.

- `model.boundary`: unset, the weights decide (FROSTER and Open-VCLIP files: zeros; CLIP weights: `mask`, missing
  neighbours of the first/last frame masked, so a 1-frame clip is plain CLIP) -> `zeros` (unmasked zero key/value
  tokens);
- `data.force_flip`: `False` (clips of classes that name left or right are never flipped: a flip changes their
  meaning) -> `True`;
- `train.decay_scalars`: `False` (`logit_scale` is a temperature, not a weight) -> `True` (it decays with the
  matrices; 1-D parameters never do);
- `train.mixed_precision`: `bf16` autocast -> `fp16` autocast with a GradScaler on GPUs, fp32 on CPUs;
- `train.lr_reference_batch`: the preset's global batch (a changed `train.global_batch` scales the lr, and the run
  says so) -> always `train.global_batch` (the lr is never scaled);
- `model.prompts`: a name without description written once ("a photo of Archery.") -> repeated ("a photo of
  Archery. Archery");
- `eval.zero_shot_templates`: 29 composed prompts, descriptions included -> 28 templates with the class name alone;
- `eval.precision`: `fp32` in both.

`resolve` runs inside `model.config.load_config`, so the written `config.yaml` shows the values in effect.
"""
from __future__ import annotations

OFFICIAL = "official"


def official_precision(cuda: bool | None = None) -> str:
    """The official code's training precision here: fp16 autocast + GradScaler on a GPU, fp32 without one."""
    if cuda is None:
        import torch
        cuda = torch.cuda.is_available()
    return "fp16" if cuda else "no"


def resolve(cfg, cuda: bool | None = None) -> list[str]:
    """Apply the switch to `cfg` in place; return the settings it changed as 'key: old -> new' lines."""
    if cfg.model.fidelity != OFFICIAL:
        return []
    want = {
        ("model", "boundary"): "zeros",
        ("model", "prompts"): OFFICIAL,
        ("data", "force_flip"): True,
        ("train", "decay_scalars"): True,
        ("train", "mixed_precision"): official_precision(cuda),
        ("train", "lr_reference_batch"): cfg.train.global_batch,
        ("eval", "precision"): "fp32",
        ("eval", "zero_shot_templates"): 28,
    }
    changed = []
    for (section, key), value in want.items():
        node = getattr(cfg, section)
        if getattr(node, key) != value:
            changed.append(f"{section}.{key}: {getattr(node, key)!r} -> {value!r}")
            setattr(node, key, value)
    return changed


def startup_notes(cfg) -> list[str]:
    """What a run should say before it starts: the switch, and a learning rate scaled away from the preset's."""
    notes = []
    if cfg.model.fidelity == OFFICIAL:
        notes.append("model.fidelity=official: zero-padded unmasked neighbours, flips of left/right classes, "
                     "logit_scale decay, fp16 + GradScaler on GPUs, name-repeating prompts, 28-template zero-shot "
                     "baseline, no lr scaling")
    t = cfg.train
    if t.global_batch != t.lr_reference_batch:
        s = t.global_batch / t.lr_reference_batch
        notes.append(f"train.global_batch={t.global_batch} differs from train.lr_reference_batch="
                     f"{t.lr_reference_batch}: the learning rates are scaled by {s:g} (lr {t.lr * s:.3g}, "
                     f"min_lr {t.min_lr * s:.3g}); the official recipe never scales them")
    return notes
