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
import math
import re
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
                                           # permutation) | "interleave" | "shard" (docs/pipeline.md, "Scale")
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
    """A setting that is missing, of the wrong type or out of its range; the message names the key (and file)."""


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: ``low``/``high`` bounds (None: open), each inclusive unless
    ``above``/``below`` make it strict. Every numeric field of the dataclasses above has one (RANGES)."""
    low: float | None = None
    high: float | None = None
    above: bool = False          # strictly greater than `low`
    below: bool = False          # strictly less than `high`

    def problem(self, value) -> str | None:
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return f"must be {'greater than' if self.above else 'at least'} {self.low}"
        if self.high is not None and (value >= self.high if self.below else value > self.high):
            return f"must be {'less than' if self.below else 'at most'} {self.high}"
        return None


# The range of every numeric setting (each element of a list or tuple). Bounds are what the recipe can run with,
# not what is sensible for accuracy: the upper ones catch a slipped digit (frame_stride=1600) before hours of work.
RANGES: dict[str, Range] = {
    "model.alpha": Range(0, 100),
    "model.distill_weight": Range(0, 1000),
    "data.train_set": Range(1, 1000),
    "data.num_frames": Range(1, 1024),
    "data.frame_stride": Range(1, 10_000),
    "data.crop_size": Range(1, 8192),
    "data.short_side_range": Range(1, 16_384),
    "data.num_views": Range(1, 1024),
    "data.num_threads": Range(1, 1024),
    "data.prefetch": Range(1, 1024),
    "data.interleave_shards": Range(1, 10_000_000),
    "data.read_chunk_mb": Range(1, 65_536),
    "train.epochs": Range(1, 1_000_000),
    "train.warmup_epochs": Range(0, None),       # and below train.epochs (validate)
    "train.lr": Range(0, 10, above=True),
    "train.min_lr": Range(0, 10),                # and at most train.lr (validate)
    "train.lr_reference_batch": Range(1, 1 << 30),
    "train.weight_decay": Range(0, 100),
    "train.betas": Range(0, 1, below=True),      # AdamW's moment decay rates
    "train.eps": Range(0, 1, above=True),
    "train.clip_grad": Range(0, None),           # 0: no clipping
    "train.global_batch": Range(1, 1 << 30),
    "train.micro_batch": Range(1, 1 << 30),
    "train.seed": Range(0, 2**32 - 1),           # numpy's seed range
    "train.average_from": Range(1, None),        # and at most train.epochs (validate)
    "train.save_every_steps": Range(0, None),    # 0: off
    "train.keep_states": Range(0, None),         # 0: keep every resume state
    "train.log_every": Range(1, None),
    "eval.batch_size": Range(1, 1 << 20),
    "eval.zero_shot_templates": Range(28, 29),
    "eval.max_missing": Range(0, None),          # a count, or a fraction below 1 of the split's rows
}

DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")

# Text settings that must name something (an empty string is never a folder, model or file).
NON_EMPTY = ("output_dir", "model.clip", "model.pretrained", "model.checkpoint", "data.splits", "data.dataset",
             "eval.weights")


def _show(value) -> str:
    """A value for an error message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
        raise ConfigError(errors[-1] if errors else f"{where}: got {_show(value)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        args = typing.get_args(tp)
        if origin is tuple:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {_show(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        try:
            number = float(value)
        except OverflowError:    # an integer beyond a float's range
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{where}={_show(value)}: must be a finite number")
        return number
    if tp is str:
        if not isinstance(value, str):
            hint = " (YAML reads no/yes/off/on as true/false: quote the word)" if isinstance(value, bool) else ""
            raise ConfigError(f"{where}: expected a string, got {_show(value)}{hint}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)   # YAML keys may be numbers, null, ...
    if unknown:
        raise ConfigError(f"unknown key {where + '.' if where else ''}{str(unknown[0])[:80]} "
                          f"(known: {', '.join(sorted(names))})")
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
            raise ConfigError(f"override {_show(item)} is not of the form key.sub=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {_show(item)}: {p} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: a date like 2020-13-45
            raise ConfigError(f"override {_show(item)}: not a YAML value: {_yaml_problem(e)}") from None
    return data


def _yaml_problem(e: Exception) -> str:
    """'line L, column C: problem' from a parser error (its own text names '<unicode string>' or the file)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or " ".join(str(e).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *,
                defer_fit: bool = False) -> Config:
    """Defaults <- YAML file <- overrides, checked against the dataclasses (`defer_fit`: see `validate`)."""
    data: dict = {}
    if path is not None:
        with open(path, "rb") as f:  # bytes: the parser detects UTF-8/UTF-16 and names a byte it cannot decode
            try:
                data = yaml.safe_load(f)
            except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: a date like 2020-13-45
                raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    data = apply_overrides(data, list(overrides or []))
    try:
        cfg = _build(Config, data, "")
        validate(cfg, defer_fit)
    except ConfigError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None
    from model.fidelity import resolve   # the official switch sets the settings it stands for
    resolve(cfg)
    return cfg


def _settings(node, where: str = ""):
    """(dotted key, value) of every leaf setting of a config (sub)tree."""
    for f in dataclasses.fields(node):
        key, value = f"{where}.{f.name}" if where else f.name, getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from _settings(value, key)
        else:
            yield key, value


def validate(cfg: Config, defer_fit: bool = False) -> None:
    """Every setting against its range (RANGES), choices and non-empty names; then the cross-field checks that a
    type cannot express. Raises ConfigError naming the key and the value. `defer_fit`: leave the schedule's fit to
    train.epochs to the caller (model.fit), which reports it together with the data's and the weights'."""
    for key, value in _settings(cfg):
        rng = RANGES.get(key)
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if rng is not None and isinstance(v, (int, float)) and not isinstance(v, bool) \
                    and (problem := rng.problem(v)):
                raise ConfigError(f"{key}={_show(value)}: {problem}")
        if key in NON_EMPTY and isinstance(value, str) and not value.strip():
            raise ConfigError(f"{key}={value!r}: must not be empty")
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
            raise ConfigError(f"{key}={_show(value)}: expected one of {', '.join(map(str, allowed))}")
    # dataset names are folders of the split layout (model.data.split_paths): a plain name, never a path
    for key, names in (("data.dataset", [d.dataset]), ("data.eval_datasets", d.eval_datasets)):
        for name in names:
            if not DATASET_NAME.fullmatch(name):
                raise ConfigError(f"{key}: {_show(name)} is not a dataset name (letters, digits, _ and -)")
    if d.protocol == "cross":
        if not d.eval_datasets:
            raise ConfigError("data.eval_datasets=[]: name at least one evaluation dataset (ucf101, hmdb51, k600)")
        if len(set(d.eval_datasets)) != len(d.eval_datasets):
            raise ConfigError(f"data.eval_datasets={d.eval_datasets}: a dataset is named twice")
    low, high = d.short_side_range
    if not d.crop_size <= low <= high:
        raise ConfigError(f"data.short_side_range={list(d.short_side_range)}: must satisfy data.crop_size "
                          f"({d.crop_size}) <= low <= high (the crop is taken from the resized frame)")
    if t.min_lr > t.lr:
        raise ConfigError(f"train.min_lr={t.min_lr:g}: must be at most train.lr={t.lr:g}")
    if t.micro_batch > t.global_batch:
        raise ConfigError(f"train.micro_batch={t.micro_batch}: must be at most train.global_batch={t.global_batch}")
    if isinstance(cfg.eval.max_missing, float) and 1 < cfg.eval.max_missing != int(cfg.eval.max_missing):
        raise ConfigError(f"eval.max_missing={cfg.eval.max_missing}: must be a count >= 0 or a fraction in [0, 1)")
    if not defer_fit:  # model/train.py checks these with the data and the weights, in one message (model.fit)
        check(schedule_problems(cfg))


# ---------------------------------------------------------------- the fit of a schedule (model.fit's other checks)
def schedule_problems(cfg: Config) -> list[tuple[str, str]]:
    """(override, reason) for the epoch counts that do not fit train.epochs."""
    t, out = cfg.train, []
    if not 0 <= t.warmup_epochs < t.epochs:
        out.append((f"train.warmup_epochs={max(0, min(t.warmup_epochs, t.epochs - 1))}",
                    f"was {t.warmup_epochs}; must be in [0, train.epochs={t.epochs})"))
    if not 1 <= t.average_from <= t.epochs:
        out.append((f"train.average_from={max(1, min(t.average_from, t.epochs))}",
                    f"was {t.average_from}; must be in [1, train.epochs={t.epochs}]"))
    return out


def check(problems: list[tuple[str, str]]) -> None:
    """Raise one ConfigError naming every override (see model.fit's docstring); nothing when the list is empty."""
    if problems:
        width = max(len(o) for o, _ in problems)
        raise ConfigError("the configuration does not fit the data or the weights; change:\n" + "\n".join(
            f"  {o:<{width}}  ({why})" for o, why in problems)
            + "\n(as overrides after --config, or in the YAML file)")
