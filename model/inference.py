"""Open-vocabulary inference: any weights, any labels, evaluation's sampling and prompt ensemble.

    p = Predictor.load("runs/k400")                    # a frostline run (its config + averaged weights)
    p = Predictor.load("/models/froster_b2n_k400.pth") # any format model.weights reads
    p = Predictor.load(None)                           # plain CLIP: ViT-B-16 'openai' (hub or its cache)
    p.set_labels(["juggling balls", "riding a bike"])
    probs = p.probabilities(clips)                     # clips [B, V*T, 3, H, W] -> [B, C]

The model is evaluation's (`Froster.predict`: the 29-template ensemble, neighbour-frame attention with the boundary
the weights imply). Plain CLIP weights (a tag, OpenAI's archive) run as evaluation's zero-shot baseline does:
frames through the image tower alone, features averaged. A video's V views are scored as evaluation scores them,
by summing their logits; the probabilities are the softmax of the views' mean logit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from model import prompts
from model.clip import is_weights_path

log = logging.getLogger(__name__)
PLAIN_KINDS = ("tag", "openai", "random")


@dataclass
class Sampling:
    """Evaluation's test-time sampling (the config's data section for a run)."""
    frames: int = 8
    stride: int = 16
    views: int = 3
    crop: int | None = None            # None: the model's input size


class Predictor:
    def __init__(self, model, sampling: Sampling, description: str):
        self.model, self.sampling, self.description = model, sampling, description
        self.labels: list[str] = []

    @classmethod
    def load(cls, weights: str | None = None, *, clip: str | None = None, base: str | None = None,
             temporal: str | None = None, boundary: str | None = None, device: str = "cpu") -> "Predictor":
        """`weights`: a run's output_dir (has config.yaml), a weights file, an open_clip tag, or None ('openai')."""
        from model.froster import Froster
        sampling = Sampling()
        quick_gelu = None
        if weights is not None and Path(weights).is_dir():
            from model.config import load_config
            from model.evaluate import resolve_weights
            run = Path(weights)
            if not (run / "config.yaml").is_file():
                raise FileNotFoundError(f"{run}: a folder without config.yaml is not a frostline run")
            cfg = load_config(run / "config.yaml", [f"output_dir={run}"])
            from model.build import quick_gelu as configured_quick_gelu
            clip = clip or cfg.model.clip
            quick_gelu = configured_quick_gelu(cfg)  # None: the exported weights say (model.clip.export_clip)
            temporal, boundary = temporal or cfg.model.temporal, boundary or cfg.model.boundary
            d = cfg.data
            sampling = Sampling(d.num_frames, d.frame_stride, d.num_views, d.crop_size)
            weights = str(resolve_weights(cfg))
            source = f"run {run} ({Path(weights).name})"
        else:
            weights = weights or "openai"
            clip = clip or (None if is_weights_path(weights) else "ViT-B-16")
            source = weights
        model = Froster.build(clip, weights, teacher=False, temporal=temporal, boundary=boundary,
                              quick_gelu=quick_gelu, base=base)
        info = model.clip_info
        if temporal is None and info.kind in PLAIN_KINDS:
            model.student.temporal = "none"  # plain CLIP: evaluation's zero-shot way (frames averaged)
        size = model.student.clip.visual.image_size
        sampling.crop = sampling.crop or (size[0] if isinstance(size, (tuple, list)) else size)
        description = (f"{source}: {info.describe()}; temporal {model.student.temporal}"
                       + (f", boundary {model.student.boundary}" if model.student.temporal == "neighbour" else "")
                       + f"; {sampling.views} views x {sampling.frames} frames, stride {sampling.stride}, "
                         f"centre crop {sampling.crop}")
        return cls(model.to(device).eval(), sampling, description)

    def set_labels(self, labels: list[str]) -> None:
        """Free-text labels (or class names: '_' becomes a space); the 29 prompts of each are encoded once."""
        if not labels:
            raise ValueError("no labels")
        self.labels = list(labels)
        self.model.set_classes(prompts.class_texts(self.labels))

    @torch.no_grad()
    def probabilities(self, clips: torch.Tensor) -> torch.Tensor:
        """clips [B, V*T, 3, H, W] (views consecutive) -> probabilities [B, C] over the labels."""
        b, vt = clips.shape[:2]
        v, t = self.sampling.views, self.sampling.frames
        if vt != v * t:
            raise ValueError(f"expected {v} views x {t} frames per video, got {vt} frames")
        device = self.model.student.clip.logit_scale.device
        logits = self.model.predict(clips.reshape(b * v, t, *clips.shape[2:]).to(device))
        return logits.view(b, v, -1).mean(dim=1).softmax(dim=-1).cpu()

    def top_k(self, probs: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
        p, i = probs.topk(min(k, probs.shape[1]), dim=1)
        return [[(self.labels[j], float(q)) for q, j in zip(row_p, row_i)] for row_p, row_i in zip(p, i)]
