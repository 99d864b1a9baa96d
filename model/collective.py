"""The two collectives the model itself needs (everything else goes through accelerate): a row all-gather that
keeps gradients, and a broadcast of one integer. Both are no-ops without an initialised process group."""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group; 1 when torch.distributed is not initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherRows(torch.autograd.Function):
    """all_gather of equal-sized row blocks that keeps gradients: each rank gets back the summed gradient of its
    own block (all_reduce + slice, which also works on gloo, unlike reduce_scatter)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's [n, ...] block concatenated in rank order, differentiable (see _GatherRows)."""
    return _GatherRows.apply(x)


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's `value` on every rank (gloo needs a CPU tensor, nccl a GPU one)."""
    t = torch.tensor([value], device=device if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(t, src=0)
    return int(t)
