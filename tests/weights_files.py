"""Weights files in the formats users have, written from a model with known weights (test helpers).

Each writer follows what the program that makes such files does: OpenAI's TorchScript archive (a traced module
with OpenAI's tensor names plus its three integer entries), PySlowFast's checkpoint dict (FROSTER / Open-VCLIP:
``model_state`` with the student under ``model.``, the frozen teacher under ``raw_model.``, the projectors as
``nn.Sequential`` layers 0 and 2), and ViFi-CLIP's ``epoch_saving`` dict of a DistributedDataParallel model (keys
``module.image_encoder.*``, ``module.text_encoder.*``, a yacs config object beside them).
"""
from __future__ import annotations

import torch
from torch import nn


class OpenAILayout(nn.Module):
    """A CLIP's tensors at the names OpenAI's CLIP module uses, plus its input_resolution / context_length /
    vocab_size entries; the text mask is a plain attribute (a constant in the trace, not a tensor entry)."""

    def __init__(self, clip, image_size: int):
        super().__init__()
        for name in ("visual", "transformer", "token_embedding", "ln_final"):
            setattr(self, name, getattr(clip, name))
        for name in ("positional_embedding", "text_projection", "logit_scale"):
            setattr(self, name, getattr(clip, name))
        self.mask = clip.attn_mask
        for key, value in (("input_resolution", image_size), ("context_length", 77), ("vocab_size", 49408)):
            self.register_buffer(key, torch.tensor(value))

    def encode_image(self, x):
        return self.visual(x)

    def encode_text(self, tokens):
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x, attn_mask=self.mask))
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


def write_openai_torchscript(clip, path) -> None:
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    layout = OpenAILayout(clip, size).eval()
    tokens = torch.zeros(1, 77, dtype=torch.long)
    tokens[0, :3] = torch.tensor([49406, 320, 49407])
    with torch.no_grad():
        traced = torch.jit.trace_module(layout, {"encode_image": (torch.zeros(1, 3, size, size),),
                                                 "encode_text": (tokens,)}, check_trace=False)
    torch.jit.save(traced, str(path))


def projector(dim: int, seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    p = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.GELU(), nn.Linear(dim, dim, bias=False))
    with torch.no_grad():
        for layer in (p[0], p[2]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.02)
    return p


def write_pyslowfast(student, teacher, path, *, projectors: bool, epoch_file: bool = True) -> None:
    """FROSTER (projectors=True) or Open-VCLIP. epoch_file: a training checkpoint (teacher, optimiser, cfg dump),
    else the weight-averaged file of weight_average_tool (``{'model_state': ...}`` of model.* and projectors)."""
    state = {f"model.{k}": v.clone() for k, v in student.state_dict().items()}
    if projectors:
        dim = student.text_projection.shape[1]
        for name, seed in (("projector_v", 1), ("projector_t", 2)):
            state.update({f"{name}.{k}": v for k, v in projector(dim, seed).state_dict().items()})
    if epoch_file:
        state.update({f"raw_model.{k}": v.clone() for k, v in teacher.state_dict().items()})
        torch.save({"epoch": 5, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []},
                    "cfg": "MODEL:\n  ARCH: vitb16\n  TEMPORAL_MODELING_TYPE: expand_temporal_view\n"}, path)
    else:
        torch.save({"model_state": state}, path)


def write_vifi_clip(clip, path) -> None:
    """ViFi-CLIP's epoch_saving of a DDP-wrapped fully fine-tuned ViFi-CLIP (no prompts)."""
    from yacs.config import CfgNode

    state = {f"module.image_encoder.{k}": v for k, v in clip.visual.state_dict().items()}
    state.update({f"module.text_encoder.transformer.{k}": v for k, v in clip.transformer.state_dict().items()})
    state["module.text_encoder.positional_embedding"] = clip.positional_embedding.detach()
    state.update({f"module.text_encoder.ln_final.{k}": v for k, v in clip.ln_final.state_dict().items()})
    state["module.text_encoder.text_projection"] = clip.text_projection.detach()
    state["module.logit_scale"] = clip.logit_scale.detach()
    tokens = torch.zeros(3, 77, dtype=torch.long)
    state["module.prompt_learner.complete_text_embeddings"] = clip.token_embedding(tokens).detach()
    config = CfgNode({"MODEL": CfgNode({"ARCH": "ViT-B/16"}), "TRAINER": CfgNode(
        {"ViFi_CLIP": CfgNode({"PROMPT_MODEL": False, "USE": "both"})})})
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {"t_initial": 10},
                "max_accuracy": 71.5, "epoch": 9, "config": config}, path)
