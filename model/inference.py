"""Open-vocabulary inference: any weights, any labels, evaluation's sampling and prompt ensemble.

    from model.inference import Predictor
    p = Predictor.load("runs/k400")                    # a run folder: its averaged weights (newest epoch before)
    p = Predictor.load("/models/froster_b2n_k400.pth") # any format model.weights reads
    p = Predictor.load("openai")                       # an open_clip tag: plain CLIP ViT-B-16 (hub or its cache)
    for r in p.predict(["a.mp4", frames], labels=["juggling balls", "riding a bike"], top_k=2):
        print(r.video, r.top_k)                        # [("juggling balls", 0.93), ("riding a bike", 0.07)]

`predict` takes video files (local, s3://, folders, globs) and decoded frames (uint8 [N, H, W, 3] arrays); both go
through evaluation's test-time sampling (`pipeline.files`: V views of T frames, centre crop) and the model is
evaluation's (`Froster.predict`: the 29-template ensemble of `model.prompts`, neighbour-frame attention with the
boundary the weights imply). Plain CLIP weights (a tag, OpenAI's archive) run as evaluation's zero-shot baseline
does: frames through the image tower alone, features averaged. A video's V views are scored as evaluation scores
them, by summing their logits; the probabilities are the softmax of the views' mean logit. tools/predict.py is a
command line over this class.

A run folder resolves to the weights the run trained (`run_weights`), never to the weights it started from.
`Predictor.warnings` says when the weights are no real CLIP (frostline's small test architectures, random init).
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model import prompts
from model.clip import is_weights_path, register_configs

log = logging.getLogger(__name__)
PLAIN_KINDS = ("tag", "openai", "random")


@dataclass
class Sampling:
    """Evaluation's test-time sampling (the config's data section for a run)."""
    frames: int = 8
    stride: int = 16
    views: int = 3
    crop: int | None = None            # None: the model's input size


@dataclass
class Prediction:
    """One video's best labels, best first: [(label, probability), ...]."""
    video: str
    top_k: list[tuple[str, float]] = field(default_factory=list)


def run_weights(run: str | Path):
    """(config, weights file) of a frostline run folder: its final average (checkpoints/swa_*.pt), or before the
    average exists its newest epoch (checkpoints/epoch_*/model.pt); never the weights the run started from.
    Raises FileNotFoundError naming what was looked for."""
    from model.average import epoch_weights
    from model.config import load_config
    from model.evaluate import final_average
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run}: a folder without config.yaml is not a frostline run (model/train.py "
                                f"writes it into output_dir)")
    cfg = load_config(run / "config.yaml", [f"output_dir={run}"])
    ckpt = run / "checkpoints"
    epochs = epoch_weights(ckpt)
    if epochs:
        average = ckpt / f"swa_{cfg.train.average_from}_{max(epochs)}.pt"
        if average.is_file():
            return cfg, average
        log.info("%s: no average of epochs %d..%d yet: the newest epoch's weights", run, cfg.train.average_from,
                 max(epochs))
        return cfg, epochs[max(epochs)]
    average = final_average(ckpt, cfg)
    if average is None:
        raise FileNotFoundError(f"{run}: no trained weights (looked for {ckpt}/swa_*.pt and {ckpt}/epoch_*/model.pt)")
    return cfg, average


class ToyWeightsWarning(UserWarning):
    """The weights are no real CLIP: scores on real videos mean nothing."""


def toy_warnings(info) -> list[str]:
    """Why the scores of these weights mean nothing on real videos, if they do not (model.clip.ClipInfo)."""
    if info.kind == "random":
        return [f"CLIP {info.name} is randomly initialised: its scores mean nothing"]
    if info.name in register_configs():
        return [f"CLIP {info.name} is a small test architecture of frostline (model/model_configs/{info.name}.json), "
                f"not a real CLIP: it knows only the words of its own training data (the demo's: the generated "
                f"world of coloured shapes), so its scores on real videos mean nothing"]
    return []


class Predictor:
    def __init__(self, model, sampling: Sampling, description: str, warnings: list[str] | None = None):
        self.model, self.sampling, self.description = model, sampling, description
        self.warnings = list(warnings or [])
        self.labels: list[str] = []

    @classmethod
    def load(cls, weights: str | None = None, *, clip: str | None = None, base: str | None = None,
             temporal: str | None = None, boundary: str | None = None, device: str = "cpu") -> "Predictor":
        """`weights`: a run's output_dir (has config.yaml), a weights file, an open_clip tag, or None ('openai')."""
        from model.froster import Froster
        sampling = Sampling()
        quick_gelu = None
        if weights is not None and Path(weights).is_dir():
            from model.build import quick_gelu as configured_quick_gelu
            run = Path(weights)
            cfg, path = run_weights(run)
            quick_gelu = configured_quick_gelu(cfg)  # None: the exported weights say (model.clip.export_clip)
            temporal, boundary = temporal or cfg.model.temporal, boundary or cfg.model.boundary
            d = cfg.data
            sampling = Sampling(d.num_frames, d.frame_stride, d.num_views, d.crop_size)
            weights = str(path)
            source = f"run {run}"
        else:
            weights = str(weights or "openai")
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
        notes = toy_warnings(info)
        for note in notes:  # a notebook shows it; tools/predict.py prints predictor.warnings itself
            warnings.warn(note, ToyWeightsWarning, stacklevel=2)
        return cls(model.to(device).eval(), sampling, description, notes)

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

    # ---------------------------------------------------------------------------------------------- the one call
    def predict(self, videos, labels: list[str] | None = None, top_k: int = 5, batch_size: int = 4
                ) -> list[Prediction]:
        """The `top_k` labels of each video, best first. `videos`: file paths or URLs (folders and globs expand),
        decoded frames (uint8 arrays [N, H, W, 3]), or a list mixing them. `labels`: free text (kept from the
        previous call when None). A video that cannot be read raises pipeline.files.VideoError naming it."""
        out = []
        for preds, errors in self.predict_batches(videos, labels, top_k, batch_size):
            if errors:
                from pipeline.files import VideoError
                raise VideoError(f"{errors[0]['video']}: {errors[0]['error']}")
            out.extend(preds)
        return out

    def predict_batches(self, videos, labels: list[str] | None = None, top_k: int = 5, batch_size: int = 4):
        """Yield ([Prediction], [{"video", "error"}]) per batch of `videos` (see `predict`): one unreadable video
        is reported, the others go on."""
        if labels is not None:
            self.set_labels(labels)
        if not self.labels:
            raise ValueError("no labels: pass labels=[...]")
        import numpy as np
        from pipeline.files import clips_for, expand_inputs
        items = list(videos) if isinstance(videos, (list, tuple)) else [videos]
        arrays = [(i, v) for i, v in enumerate(items) if isinstance(v, (np.ndarray, torch.Tensor))]
        if arrays:
            names = [f"frames[{i}]" for i, _ in arrays]
            clips = torch.stack([self.frames_clip(v) for _, v in arrays])
            for lo in range(0, len(names), batch_size):
                yield self._scored(names[lo:lo + batch_size], clips[lo:lo + batch_size], top_k), []
        paths = expand_inputs([os.fspath(v) for v in items if not isinstance(v, (np.ndarray, torch.Tensor))])
        device = "gpu" if self.model.student.clip.logit_scale.device.type == "cuda" else "cpu"
        for names, clips, errors in clips_for(paths, self.sampling, device, batch_size):
            yield (self._scored(names, clips, top_k) if names else []), errors

    def frames_clip(self, frames) -> torch.Tensor:
        """Decoded frames uint8 [N, H, W, 3] -> the clip [V*T, 3, crop, crop] evaluation would sample from them."""
        from pipeline.files import centre_crop_normalise, view_indices
        x = torch.as_tensor(frames)
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8 or x.shape[0] == 0:
            raise ValueError(f"decoded frames must be uint8 [N, H, W, 3] with N >= 1, got {x.dtype} "
                             f"{tuple(x.shape)}")
        s = self.sampling
        idx = torch.from_numpy(view_indices(x.shape[0], s.frames, s.stride, s.views))
        return centre_crop_normalise(x[idx], s.crop)

    def _scored(self, names: list[str], clips: torch.Tensor, top_k: int) -> list[Prediction]:
        return [Prediction(n, top) for n, top in zip(names, self.top_k(self.probabilities(clips), top_k))]
