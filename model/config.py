"""Typed training/evaluation configuration: dataclasses loaded from YAML, with dotted command-line overrides.

A config file is plain YAML whose top-level sections mirror the dataclasses below::

    output_dir: runs/k400
    model: {clip: ViT-B-16, pretrained: openai}
    train: {epochs: 22, global_batch: 64}

and `key.sub=value` overrides (``train.epochs=3``, ``model.pretrained=null``) are applied on top. Values are parsed with
``yaml.safe_load`` and checked against the field types, so a typo or a wrong type fails loudly, naming the key.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class ModelConfig:
    """Which CLIP, and the FROSTER knobs (see model/froster.py)."""
    clip: str = "ViT-B-16"                 # open_clip model name (or a project config under model/model_configs)
    pretrained: str | None = "openai"      # an open_clip tag (openai: the hub or its offline cache) or a weights
                                           # file of any format model/weights.py reads; null: random init
    checkpoint: str | None = None          # deprecated alias of pretrained (a path); wins when set
    alpha: float = 0.1                     # residual projector weight: z' = z + alpha * P(z)
    distill_weight: float = 2.0            # lambda in CE + lambda * (visual + text distillation)
    distill_terms: str = "both"            # ablations: "both" (the paper) | "visual" | "text" (model/loss.py)
    temporal: str | None = None            # "neighbour" (expand temporal view) | "none" (frames averaged);
                                           # null: what the weights imply (ViFi-CLIP files: none), else neighbour
    boundary: str | None = None            # "mask" (correct) | "zeros" (the reference's unmasked zero tokens);
                                           # null: what the weights imply (FROSTER/Open-VCLIP files: zeros), else mask
    prompts: str = "frostline"             # names without a description: "frostline" (template once) | "official"
    fidelity: str = "frostline"            # "official": every official-code behaviour at once (model/fidelity.py)


@dataclass
class DataConfig:
    """Where the split files are (``tools/make_splits.py --out``) and how clips are sampled."""
    splits: str = "splits"                 # root folder or s3:// URL written by make_splits
    protocol: str = "base2novel"           # "base2novel" | "cross"
    dataset: str = "ucf101"                # base2novel: the dataset; cross: the training dataset (k400)
    train_set: int = 1                     # base2novel few-shot training set: train_s{1,2,3}
    eval_datasets: list[str] = field(default_factory=lambda: ["ucf101", "hmdb51", "k600"])  # cross only
    device: str = "auto"                   # loader device: "auto" (gpu when CUDA is there) | "cpu" | "gpu"
    num_frames: int = 8
    sampling: str = "dense"                # "dense" (T frames every frame_stride) | "segment" (TSN)
    frame_stride: int = 16
    crop_size: int = 224
    short_side_range: tuple[int, int] = (224, 256)
    flip: bool = True
    force_flip: bool = False               # also flip clips of classes that name left or right (the official code)
    num_views: int = 3                     # evaluation: temporal views, logits summed
    num_threads: int = 4
    prefetch: int = 2
    shuffle: str = "auto"                  # training order (pipeline.order): "auto" | "sample" (exact global
                                           # permutation) | "interleave" | "shard" (README, "Scale")
    interleave_shards: int = 16            # "interleave": shards mixed at any moment
    read_chunk_mb: int = 64                # object storage: the largest ranged read that serves several samples


@dataclass
class TrainConfig:
    """The optimisation recipe. ``lr`` and ``min_lr`` are for ``lr_reference_batch`` and scale linearly."""
    epochs: int = 22
    warmup_epochs: int = 2
    lr: float = 3.33e-6
    min_lr: float = 3.33e-8
    lr_reference_batch: int = 64
    weight_decay: float = 0.01             # not applied to 1-D parameters (norms, biases, scales)
    decay_scalars: bool = False            # also decay 0-D parameters (logit_scale), as the official optimizer does
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float = 1.0                 # max gradient norm; 0 disables clipping
    global_batch: int = 64                 # clips per optimiser step over all processes
    micro_batch: int = 8                   # clips per process per forward; accumulation fills the rest
    mixed_precision: str = "bf16"          # "no" | "bf16" | "fp16" (autocast through accelerate)
    distributed: str = "ddp"               # "ddp" | "fsdp"
    seed: int = 0
    average_from: int = 2                  # evaluate the uniform average of epochs average_from..last (swa_2_22)
    save_every_steps: int = 0              # also write a mid-epoch resume point every N optimiser steps (0: off)
    keep_states: int = 2                   # resume states kept (weights of every epoch are always kept)
    log_every: int = 10                    # optimiser steps between log lines
    progress: bool = True                  # tqdm bar on the main process


@dataclass
class EvalConfig:
    batch_size: int = 8                    # rows per batch per process (a row is one view of one clip)
    weights: str = "average"               # "average" | "last" | a path to a student weights file
    zero_shot: bool = False                # evaluate the frozen original CLIP instead (the baseline)
    precision: str = "fp32"                # "fp32" (the official evaluation) | "bf16" | "fp16" autocast
    zero_shot_templates: int = 29          # baseline prompts: 29 composed ones | 28 (the official: names only)
    max_missing: int | float = 0           # split samples that may go unevaluated: a count, or a fraction (< 1)
    allow_partial: bool = False            # evaluate a run whose training has not finished (--allow-partial)


@dataclass
class Config:
    output_dir: str = "runs/froster"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    pass


def _coerce(value, tp, where: str):
    """Check/convert one YAML value to the annotated type, or raise naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key {where + '.' if where else ''}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        tp = hints[name]
        kwargs[name] = _build(tp, value, key) if dataclasses.is_dataclass(tp) else _coerce(value, tp, key)
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` strings to a nested dict; values are YAML (``3``, ``1e-5``, ``null``, ``[1, 2]``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: not a YAML value: {_yaml_problem(e)}") from None
    return data


def _yaml_problem(e: yaml.YAMLError) -> str:
    """'line L, column C: problem' from a parser error (its own text names '<unicode string>' or the file)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- overrides, checked against the dataclasses."""
    data: dict = {}
    if path is not None:
        with open(path) as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    data = apply_overrides(data, list(overrides or []))
    try:
        cfg = _build(Config, data, "")
    except ConfigError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None
    validate(cfg)
    from model.fidelity import resolve   # the official switch sets the settings it stands for
    resolve(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks that a type cannot express."""
    t, d = cfg.train, cfg.data
    choices = {
        "data.protocol": (d.protocol, ("base2novel", "cross")),
        "data.device": (d.device, ("auto", "cpu", "gpu")),
        "data.sampling": (d.sampling, ("dense", "segment")),
        "data.shuffle": (d.shuffle, ("auto", "sample", "interleave", "shard")),
        "train.mixed_precision": (t.mixed_precision, ("no", "bf16", "fp16")),
        "train.distributed": (t.distributed, ("ddp", "fsdp")),
        "model.temporal": (cfg.model.temporal or "neighbour", ("neighbour", "none")),
        "model.boundary": (cfg.model.boundary or "mask", ("mask", "zeros")),
        "model.prompts": (cfg.model.prompts, ("frostline", "official")),
        "model.fidelity": (cfg.model.fidelity, ("frostline", "official")),
        "model.distill_terms": (cfg.model.distill_terms, ("both", "visual", "text")),
        "eval.precision": (cfg.eval.precision, ("fp32", "bf16", "fp16")),
        "eval.zero_shot_templates": (cfg.eval.zero_shot_templates, (28, 29)),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(allowed)}")
    for key, value in (("train.epochs", t.epochs), ("train.global_batch", t.global_batch),
                       ("train.micro_batch", t.micro_batch), ("data.num_frames", d.num_frames),
                       ("data.num_views", d.num_views), ("eval.batch_size", cfg.eval.batch_size),
                       ("data.interleave_shards", d.interleave_shards), ("data.read_chunk_mb", d.read_chunk_mb)):
        if value < 1:
            raise ConfigError(f"{key}={value}: must be at least 1")
    if cfg.eval.max_missing < 0:
        raise ConfigError(f"eval.max_missing={cfg.eval.max_missing}: must be a count >= 0 or a fraction in [0, 1)")
    if not 0 <= t.warmup_epochs < t.epochs:
        raise ConfigError(f"train.warmup_epochs={t.warmup_epochs}: must be in [0, train.epochs)")
    if not 1 <= t.average_from <= t.epochs:
        raise ConfigError(f"train.average_from={t.average_from}: must be in [1, train.epochs={t.epochs}]")
