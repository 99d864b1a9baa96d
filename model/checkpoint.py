"""Checkpoints: what a run writes so that it can stop at any moment and resume exactly.

Layout under ``output_dir/checkpoints/``::

    epoch_NNN/  model.pt        the student's weights (model.clip.export_clip's format), kept for every epoch
                state.pt        model (student + projectors), optimiser, scheduler, scaler, loader position,
                                counters, the run's config and its number of processes
                rng_rankR.pt    each rank's RNG states and its own loader position
    step_NNNNNNNN/              a mid-epoch resume point (``train.save_every_steps``): state and RNG only
    latest.json                 {"path": the newest complete folder, "global_step": ...}

A folder is written as ``NAME.tmp`` and renamed when complete, then ``latest.json`` is replaced atomically, so a
kill at any moment leaves the previous resume point intact. Only the newest ``train.keep_states`` resume states
are kept; epoch weights always stay (the average needs them). Under FSDP the full model and optimiser state are
gathered for saving and scattered back on load, so a checkpoint does not depend on the sharding.
"""
from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from model.clip import export_clip, uses_quick_gelu
from model.config import Config, ConfigError

RESUME_DIR = re.compile(r"(epoch_\d+|step_\d+)")   # what latest.json may point at: a folder beside it
STATE_FIELDS = {"model": dict, "optimizer": dict, "scheduler": dict, "config": dict, "epoch": int,
                "step_in_epoch": int, "global_step": int, "num_processes": int}


class CheckpointError(ValueError):
    """A run folder's bookkeeping (latest.json, state.pt, rng_rankR.pt) that cannot be used; names the file."""


# Settings that may change between a run and its resume: where things are, how much is printed or kept.
RESUMABLE_CHANGES = {"output_dir", "data.splits", "data.device", "data.num_threads", "data.prefetch",
                     "train.progress", "train.log_every", "train.keep_states", "train.save_every_steps"}


# ------------------------------------------------------------------------------------------------------ RNG state
def rng_state() -> dict:
    """This process's RNG states, in types that torch.load(weights_only=True) reads back."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------------- save
def save_checkpoint(path: Path, accelerator, model, optimizer, scheduler, loader, *, epoch: int,
                    step_in_epoch: int, global_step: int, cfg: Config, weights: bool) -> None:
    """Write `path/` atomically (a `.tmp` folder renamed when complete) and point `latest.json` at it.

    All ranks must call this (FSDP gathers the full state; every rank writes its own RNG file). The folder is on
    a file system that all ranks see (a shared one for several nodes)."""
    tmp = path.with_name(path.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    fsdp = is_fsdp(accelerator, model)
    full = accelerator.get_state_dict(model) if not fsdp else _fsdp_model_state(model)  # full, on rank 0 at least
    optim_state = optimizer.state_dict() if not fsdp else _fsdp_optim_state(model, optimizer)
    save_file({"rng": rng_state(), "loader": loader.state_dict()}, tmp / f"rng_rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        trainable = {k: v for k, v in full.items() if not k.startswith("teacher.")}
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else {}
        save_file({"model": trainable, "optimizer": optim_state, "scheduler": scheduler.state_dict(),
               "scaler": scaler, "loader": loader.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
               "global_step": global_step, "num_processes": accelerator.num_processes,
               "config": cfg.to_dict()}, tmp / "state.pt")
        if weights:
            student = {k[len("student.clip."):]: v for k, v in full.items() if k.startswith("student.clip.")}
            raw = accelerator.unwrap_model(model)
            video = raw.student  # what the weights alone do not say travels with them
            # the architecture really built (the weights decide it: a small CLIP under a ViT-B-16 preset is no ViT-B-16)
            name = raw.clip_info.name if getattr(raw, "clip_info", None) is not None else cfg.model.clip
            _write(tmp / "model.pt", lambda: export_clip(student, tmp / "model.pt", name,
                                                         quick_gelu=uses_quick_gelu(video.clip),
                                                         boundary=video.boundary, temporal=video.temporal))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        pointer = path.parent / "latest.json"
        pointer.with_suffix(".tmp").write_text(json.dumps({"path": path.name, "global_step": global_step}))
        os.replace(pointer.with_suffix(".tmp"), pointer)
        prune(path.parent, cfg.train.keep_states)
    accelerator.wait_for_everyone()


def save_file(obj, path: Path) -> None:
    """torch.save(obj, path), where a failed write is an OSError that names `path`."""
    _write(Path(path), lambda: torch.save(obj, path))


def _write(path: Path, write) -> None:
    """Run `write()`. torch's zip writer reports a full disk as a RuntimeError without errno or file name
    (``[enforce fail at inline_container.cc:...] . unexpected pos``): that becomes OSError(ENOSPC, path)."""
    try:
        write()
    except OSError as e:
        if not e.filename:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except RuntimeError as e:
        if "unexpected pos" in str(e) or "file write failed" in str(e) or "PytorchStreamWriter" in str(e):
            raise OSError(errno.ENOSPC, f"could not write it: {os.strerror(errno.ENOSPC)}", str(path)) from e
        raise


def is_fsdp(accelerator, model=None) -> bool:
    """Whether the run is sharded: accelerate set FSDP up, or `model` is an FSDP module (model/sharding.py)."""
    from accelerate.utils import DistributedType

    from model.sharding import is_sharded
    return accelerator.distributed_type == DistributedType.FSDP or (model is not None and is_sharded(model))


def _gather_options(model):
    """Full state dicts; offloaded to the CPU only from an accelerator. On CPU processes (gloo) torch 2.14's
    offloading path returns wrong optimiser moments (exp_avg of rank 0's shard), so there every rank gathers the
    full state in place (tests/test_train_reliability.py::test_fsdp_run_killed_...)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    on_cpu = next(model.parameters()).device.type == "cpu"
    return StateDictOptions(full_state_dict=True, cpu_offload=not on_cpu)


def _fsdp_model_state(model) -> dict:
    """The full (unsharded) model state keyed by the plain parameter names, gathered from the FSDP shards."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    return get_model_state_dict(model, options=_gather_options(model))


def _fsdp_optim_state(model, optimizer) -> dict:
    """The full (unsharded) optimiser state keyed by parameter name, gathered from the FSDP shards."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    return get_optimizer_state_dict(model, optimizer.optimizer, options=_gather_options(model))


def _fsdp_load(model, optimizer, model_state: dict, optim_state: dict) -> None:
    """Scatter a full model/optimiser state back into the FSDP shards (every rank holds the full state)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)
    opts = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, model_state, options=opts)
    set_optimizer_state_dict(model, optimizer.optimizer, optim_state_dict=optim_state, options=opts)


def prune(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest `keep` resume states; epoch weights (model.pt) always stay for the average."""
    if keep <= 0:
        return
    states = sorted((d for d in ckpt_dir.iterdir() if d.is_dir() and (d / "state.pt").exists()
                     and not d.name.endswith(".tmp")), key=lambda d: os.path.getmtime(d / "state.pt"))
    for d in states[:-keep]:
        for f in [d / "state.pt", *d.glob("rng_rank*.pt")]:
            f.unlink()
        if not (d / "model.pt").exists():
            shutil.rmtree(d)


# ---------------------------------------------------------------------------------------------------------- load
def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The folder latest.json points at (None without a latest.json); a damaged pointer is a CheckpointError."""
    pointer = ckpt_dir / "latest.json"
    if not pointer.exists():
        return None
    advice = f"remove {pointer} to start over, or use another output_dir"
    try:
        entry = json.loads(pointer.read_text(encoding="utf-8"))
    except ValueError as e:  # not JSON, not UTF-8
        raise CheckpointError(f"{pointer}: not a readable resume pointer ({e}); {advice}") from None
    name = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not RESUME_DIR.fullmatch(name):
        shown = repr(entry)[:80]
        raise CheckpointError(f"{pointer}: expected {{\"path\": \"epoch_NNN\" or \"step_NNNNNNNN\"}}, got {shown}; "
                              f"{advice}")
    path = ckpt_dir / name
    if not (path / "state.pt").exists():
        raise FileNotFoundError(f"{pointer} points at {path}, which has no state.pt; remove {pointer} to start over")
    return path


def read_state(path: Path) -> dict:
    """torch.load(weights_only=True) of a resume file (state.pt, rng_rankR.pt); a damaged one (cut short, another
    format) is a CheckpointError naming it."""
    from model.weights import UNREADABLE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE:
        raise
    except Exception as e:  # noqa: BLE001 - torch reports a damaged file in many classes (RuntimeError, EOFError, ...)
        raise CheckpointError(f"{path}: not a readable resume state ({' '.join(str(e).split())[:160]}); remove "
                              f"its folder and the latest.json that points at it to resume from the one "
                              f"before, or use another output_dir") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a resume state")
    return state


def config_changes(saved: dict, now: dict) -> list[str]:
    """'key: saved -> now' for every training setting that differs (the eval section never matters)."""
    def norm(x):
        return list(x) if isinstance(x, (list, tuple)) else x
    out = []
    for section in ("model", "data", "train"):
        for k, v in now[section].items():
            old = saved.get(section, {}).get(k)
            if f"{section}.{k}" not in RESUMABLE_CHANGES and norm(old) != norm(v):
                out.append(f"{section}.{k}: {old!r} -> {v!r}")
    return out


def check_resumable(path: Path, cfg: Config, num_processes: int) -> dict:
    """The resume state at `path`, after checking that this run may continue it (same training settings, same
    number of processes); raises ConfigError naming the differences. Reads only: nothing is written."""
    state = read_state(path / "state.pt")
    wrong = [k for k, tp in STATE_FIELDS.items() if not isinstance(state.get(k), tp)]
    if wrong or not all(isinstance(state["config"].get(s, {}), dict) for s in ("model", "data", "train")):
        raise CheckpointError(f"{path / 'state.pt'}: not a frostline resume state (missing or wrong: "
                              f"{', '.join(wrong) or 'config sections'})")
    changed = config_changes(state["config"], cfg.to_dict())
    if changed:
        raise ConfigError(f"{path} belongs to a run with other settings ({'; '.join(changed[:5])}); resume with "
                          f"the same settings or use another output_dir")
    if state["num_processes"] != num_processes:
        raise ConfigError(f"{path} was written by {state['num_processes']} processes, this run has "
                          f"{num_processes}: exact resume needs the same number (data order per rank)")
    return state


def load_checkpoint(path: Path, accelerator, model, optimizer, scheduler, cfg: Config, state: dict | None = None
                    ) -> dict:
    """Restore everything save_checkpoint wrote; returns the state (epoch, step_in_epoch, global_step, loader).
    `state`: what check_resumable(path, ...) returned, when the caller has it already."""
    state = state or check_resumable(path, cfg, accelerator.num_processes)
    raw = accelerator.unwrap_model(model)
    expected = {k for k in raw.state_dict() if not k.startswith("teacher.")}
    if set(state["model"]) != expected:
        diff = sorted(set(state["model"]) ^ expected)[:5]
        raise CheckpointError(f"{path}/state.pt does not match the model ({cfg.model.clip}): e.g. {diff}")
    try:
        if not is_fsdp(accelerator, model):
            raw.load_state_dict(state["model"], strict=False)  # the teacher is rebuilt from the pretrained CLIP
            optimizer.load_state_dict(state["optimizer"])
        else:
            _fsdp_load(model, optimizer, state["model"], state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if accelerator.scaler is not None and state.get("scaler"):
            accelerator.scaler.load_state_dict(state["scaler"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # tensors or groups that do not fit this run
        raise CheckpointError(f"{path}/state.pt does not fit this run ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:160]})") from None
    rng_file = path / f"rng_rank{accelerator.process_index}.pt"
    mine = read_state(rng_file)
    try:
        set_rng_state(mine["rng"])
        state["loader"] = mine["loader"]  # this rank's own data position
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{rng_file}: not a resume RNG state ({type(e).__name__}: {e})") from None
    return state
