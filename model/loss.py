"""The FROSTER objective (ICLR 2024, eq. 6), in one place:

    L = CE(logits, y) + λ · [ mean(1 − cos(z_v', t_v)) + mean(1 − cos(z_t', t_t)) ]

- ``logits``: the student's video-text logits (features *before* the projectors), one row per clip;
- ``z_v' = P_v(z_v)``, ``z_t' = P_t(z_t)``: the student's per-frame video features and its class-text features
  after the residual projectors (model/froster.py, ``ResidualProjector``);
- ``t_v``, ``t_t``: the frozen teacher's features of the same frames and the same class texts;
- ``λ``: ``model.distill_weight`` (2.0 in the paper's recipe).

``model.distill_terms`` (ablations): ``both`` is the equation above; ``visual`` keeps only the visual term in the
total, ``text`` only the text term. Both terms are still computed and reported (training logs), so an ablation's
log shows how far the dropped side drifts.

The means run over every feature vector: all frames of all clips, all classes. Everything is computed in at
least float32, whatever autocast handed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def at_least_f32(x: torch.Tensor) -> torch.Tensor:
    """Losses in at least float32 (autocast hands us bf16/fp16)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """mean(1 - cos) over every feature vector (frames of all clips, or classes)."""
    s = at_least_f32(student)
    return (1 - F.cosine_similarity(s, at_least_f32(teacher).to(s.dtype), dim=-1)).mean()


@dataclass
class LossTerms:
    loss: torch.Tensor            # the total, what gets back-propagated
    ce: torch.Tensor
    distill_visual: torch.Tensor
    distill_text: torch.Tensor


DISTILL_TERMS = ("both", "visual", "text")


def froster_loss(logits: torch.Tensor, labels: torch.Tensor, zv_proj: torch.Tensor, tv: torch.Tensor,
                 zt_proj: torch.Tensor, tt: torch.Tensor, distill_weight: float,
                 distill_terms: str = "both") -> LossTerms:
    """CE + λ·[visual + text residual distillation]; see the module docstring for the symbols and
    `distill_terms`."""
    if distill_terms not in DISTILL_TERMS:
        raise ValueError(f"distill_terms must be one of {DISTILL_TERMS}, got {distill_terms!r}")
    ce = F.cross_entropy(at_least_f32(logits), labels)
    dv = distill_loss(zv_proj, tv)
    dt = distill_loss(zt_proj, tt)
    distill = dv + dt if distill_terms == "both" else dv if distill_terms == "visual" else dt
    return LossTerms(ce + distill_weight * distill, ce, dv, dt)
