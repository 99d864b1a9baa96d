"""FSDP on CPU processes: frostline shards the model itself where accelerate will not.

accelerate 1.x turns FSDP on for GPU launches only; asked for it on CPU processes it silently trains with DDP.
torch's FSDP itself runs on CPU processes (gloo), so for ``train.distributed=fsdp`` on several CPU processes
frostline wraps the model in ``FullyShardedDataParallel`` (``use_orig_params=True``, as accelerate's plugin does)
before the optimiser is built (its parameter groups are chosen before wrapping, from the unflattened shapes),
and gives only the optimiser to ``accelerator.prepare`` (which would otherwise wrap the sharded model in DDP as
well). What accelerate's prepare would add is done here: bf16 autocast around the forward. Gradient clipping
goes through the FSDP module (the norm over all shards, not this rank's shard).

torch's FSDP cannot shard 0-d parameters (CLIP's ``logit_scale``): they stay whole on every rank, outside FSDP,
and their gradients are averaged over the ranks here (``average_replicated_grads``) after the last micro-batch
of a step, as DDP would; the optimiser state of the whole model is then still gathered in one full dict.

Whether a model is sharded is read from the model itself (``is_sharded``), so the checkpoint code gathers the
full model and optimiser state for such a run exactly as for an FSDP run that accelerate set up.
"""
from __future__ import annotations

import torch

from model.config import Config, ConfigError


def own_fsdp(cfg: Config, accelerator) -> bool:
    """Whether frostline shards the model itself: FSDP asked for, several processes, CPU devices."""
    return cfg.train.distributed == "fsdp" and accelerator.num_processes > 1 and accelerator.device.type == "cpu"


def is_sharded(model) -> bool:
    """Whether `model` (as prepared) is an FSDP module, whoever wrapped it."""
    from torch.distributed.fsdp import FullyShardedDataParallel
    return isinstance(model, FullyShardedDataParallel)


def shard(model: torch.nn.Module, cfg: Config, accelerator) -> torch.nn.Module:
    """`model` in FSDP on this CPU process (see the module docstring); all ranks call it with the same weights."""
    from torch.distributed.fsdp import FullyShardedDataParallel
    if cfg.train.mixed_precision not in ("no", "bf16"):
        raise ConfigError(f"train.mixed_precision={cfg.train.mixed_precision!r} is not available with FSDP on CPU "
                          f"processes; use bf16 or no")
    before = list(model.parameters())
    scalars = [p for p in before if p.ndim == 0]  # not shardable: replicated, see the docstring
    wrapped = FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True,
                                       ignored_states=scalars)
    # use_orig_params keeps the Parameter objects (now views into this rank's shard), so an optimiser built
    # from them, e.g. param groups chosen by shape before wrapping, drives the shards.
    if {id(p) for p in wrapped.parameters()} != {id(p) for p in before}:
        raise RuntimeError("FSDP replaced the model's parameters: the optimiser would not see the shards")
    wrapped.frostline_replicated = [p for p in scalars if p.requires_grad]
    if cfg.train.mixed_precision == "bf16":
        wrapped.forward = torch.autocast("cpu", dtype=torch.bfloat16)(wrapped.forward)
    return wrapped


def average_replicated_grads(model) -> None:
    """Average over the ranks the gradients of the parameters FSDP leaves whole (a no-op for other models)."""
    import torch.distributed as dist
    params = [p for p in getattr(model, "frostline_replicated", []) if p.grad is not None]
    if not params:
        return
    flat = torch.stack([p.grad.reshape(()) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for p, g in zip(params, flat):
        p.grad.copy_(g)


def clip_grad_norm_(accelerator, model, max_norm: float) -> None:
    """Clip by the norm of the whole gradient: over all shards for a sharded model."""
    if is_sharded(model):
        model.clip_grad_norm_(max_norm)
    else:
        accelerator.clip_grad_norm_(model.parameters(), max_norm)
