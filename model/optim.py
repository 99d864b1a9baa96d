"""The optimisation arithmetic of the recipe: AdamW parameter groups, the learning-rate schedule, the linear lr
scaling with the global batch, and gradient accumulation."""
from __future__ import annotations

import math

import torch

from model.config import ConfigError, TrainConfig


def param_groups(model, weight_decay: float, decay_scalars: bool = False) -> list[dict]:
    """AdamW groups: weight decay on matrices only; none on 1-D (and 0-D) parameters: norms, biases, scales.
    `decay_scalars` also decays 0-D parameters (CLIP's logit_scale), as the official optimizer does."""
    decay, no_decay = [], []
    for _, p in model.named_trainable_parameters():
        (decay if p.ndim >= 2 or (decay_scalars and p.ndim == 0) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, *, total: int, warmup: int, peak: float, final: float) -> float:
    """Linear warm-up from `final` to `peak` over `warmup` steps, then cosine from `peak` down to `final`."""
    if step < warmup:
        return final + (peak - final) * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def scaled_lr(cfg: TrainConfig) -> tuple[float, float]:
    """(peak lr, final lr) scaled linearly with the global batch, as the reference recipe does."""
    s = cfg.global_batch / cfg.lr_reference_batch
    return cfg.lr * s, cfg.min_lr * s


def adamw(groups: list[dict], cfg: TrainConfig) -> torch.optim.AdamW:
    """The recipe's optimiser over `groups` (param_groups): AdamW at the scaled peak lr, the config's betas and eps."""
    peak, _ = scaled_lr(cfg)
    return torch.optim.AdamW(groups, lr=peak, betas=cfg.betas, eps=cfg.eps)


def lr_schedule(optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per optimiser step: warm-up over cfg.warmup_epochs, then cosine to the scaled min_lr at the last step."""
    peak, final = scaled_lr(cfg)
    total, warmup = steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.warmup_epochs
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(
        s, total=total, warmup=warmup, peak=peak, final=final) / peak)


def accumulation_steps(global_batch: int, micro_batch: int, num_processes: int) -> int:
    """Micro-batches per optimiser step so that micro_batch x processes x steps == global_batch exactly."""
    per_step = micro_batch * num_processes
    if global_batch % per_step:
        raise ConfigError(
            f"train.global_batch={global_batch} is not a multiple of train.micro_batch={micro_batch} x "
            f"{num_processes} process(es); pick a micro_batch that divides {global_batch // num_processes}")
    return global_batch // per_step
