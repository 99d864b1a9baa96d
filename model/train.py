"""The FROSTER training recipe: read it top to bottom.

    accelerate launch model/train.py --config model/configs/cross_k400.yaml [key.sub=value ...]
    python model/train.py --config model/configs/demo.yaml train.epochs=2          # one process, CPU or GPU
    accelerate launch model/train.py --config FILE --eval-only [--zero-shot] [--weights PATH]

One process per device (DDP by default, FSDP with ``train.distributed=fsdp``), micro-batches accumulated until
``train.global_batch`` clips make one AdamW step, a linear warm-up then cosine learning rate per optimiser step,
bf16 autocast. After every epoch ``output_dir/checkpoints/epoch_NNN/`` holds the student's weights (``model.pt``,
the exported CLIP) and a resume state (``state.pt``: model, optimiser, scheduler, scaler, loader position;
``rng_rankR.pt``: each rank's RNG states). Re-running the same command resumes from the newest state exactly.
After the last epoch the weights of epochs ``train.average_from``..last are averaged (``swa_2_22.pt``) and
evaluated (model/evaluate.py), writing ``results.json`` and ``results.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

# OpenMP threads that spin while they wait steal the cores from the DALI and decoder threads on a busy
# machine (measured: 5x slower CPU training on 2 shared cores); sleeping costs nothing on a GPU run.
# It must be set before torch starts its thread pool, so here, before `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if __package__ in (None, ""):  # `python model/train.py` / `accelerate launch model/train.py` run this as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

from model import evaluate, prompts
from model.clip import export_clip
from model.config import (Config, ConfigError, accumulation_steps, check_crop, load_config, loader_config,
                          loader_device, quick_gelu, scaled_lr, split_paths)
from model.froster import Froster


# --------------------------------------------------------------------------------------------------- small pieces
def param_groups(model: Froster, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only; none on 1-D (and 0-D) parameters: norms, biases, scales."""
    decay, no_decay = [], []
    for _, p in model.named_trainable_parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, *, total: int, warmup: int, peak: float, final: float) -> float:
    """Linear warm-up from `final` to `peak` over `warmup` steps, then cosine from `peak` down to `final`."""
    if step < warmup:
        return final + (peak - final) * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------------------------------- checkpoints
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


def save_checkpoint(path: Path, accelerator: Accelerator, model, optimizer, scheduler, loader, *,
                    epoch: int, step_in_epoch: int, global_step: int, cfg: Config, weights: bool) -> None:
    """Write `path/` atomically (a `.tmp` folder renamed when complete) and point `latest.json` at it.

    All ranks must call this (FSDP gathers the full state; every rank writes its own RNG file). The folder is on
    a file system that all ranks see (a shared one for several nodes)."""
    tmp = path.with_name(path.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    full = accelerator.get_state_dict(model)  # gathered on every rank for FSDP; the plain state dict for DDP
    optim_state = optimizer.state_dict() if cfg.train.distributed == "ddp" else _fsdp_optim_state(model, optimizer)
    torch.save({"rng": rng_state(), "loader": loader.state_dict()}, tmp / f"rng_rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        trainable = {k: v for k, v in full.items() if not k.startswith("teacher.")}
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else {}
        torch.save({"model": trainable, "optimizer": optim_state, "scheduler": scheduler.state_dict(),
                    "scaler": scaler, "loader": loader.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
                    "global_step": global_step, "num_processes": accelerator.num_processes,
                    "config": cfg.to_dict()}, tmp / "state.pt")
        if weights:
            student = {k[len("student.clip."):]: v for k, v in full.items() if k.startswith("student.clip.")}
            export_clip(student, tmp / "model.pt", cfg.model.clip)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        pointer = path.parent / "latest.json"
        pointer.with_suffix(".tmp").write_text(json.dumps({"path": path.name, "global_step": global_step}))
        os.replace(pointer.with_suffix(".tmp"), pointer)
        _prune(path.parent, cfg.train.keep_states)
    accelerator.wait_for_everyone()


def _fsdp_optim_state(model, optimizer) -> dict:
    """The full (unsharded) optimiser state keyed by parameter name, gathered from the FSDP shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    return get_optimizer_state_dict(model, optimizer.optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _fsdp_load(model, optimizer, model_state: dict, optim_state: dict) -> None:
    """Scatter a full model/optimiser state back into the FSDP shards (every rank holds the full state)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)
    opts = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, model_state, options=opts)
    set_optimizer_state_dict(model, optimizer.optimizer, optim_state_dict=optim_state, options=opts)


def _prune(ckpt_dir: Path, keep: int) -> None:
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


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    pointer = ckpt_dir / "latest.json"
    if not pointer.exists():
        return None
    path = ckpt_dir / json.loads(pointer.read_text())["path"]
    if not (path / "state.pt").exists():
        raise FileNotFoundError(f"{pointer} points at {path}, which has no state.pt; remove {pointer} to start over")
    return path


# Settings that may change between a run and its resume: where things are, how much is printed or kept.
RESUMABLE_CHANGES = {"output_dir", "data.splits", "data.device", "data.num_threads", "data.prefetch",
                     "train.progress", "train.log_every", "train.keep_states", "train.save_every_steps"}


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


def load_checkpoint(path: Path, accelerator: Accelerator, model, optimizer, scheduler, cfg: Config) -> dict:
    """Restore everything save_checkpoint wrote; returns the state (epoch, step_in_epoch, global_step, loader)."""
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    changed = config_changes(state["config"], cfg.to_dict())
    if changed:
        raise ConfigError(f"{path} belongs to a run with other settings ({'; '.join(changed[:5])}); resume with "
                          f"the same settings or use another output_dir")
    if state["num_processes"] != accelerator.num_processes:
        raise RuntimeError(f"{path} was written by {state['num_processes']} processes, this run has "
                           f"{accelerator.num_processes}: exact resume needs the same number (data order per rank)")
    raw = accelerator.unwrap_model(model)
    expected = {k for k in raw.state_dict() if not k.startswith("teacher.")}
    if set(state["model"]) != expected:
        diff = sorted(set(state["model"]) ^ expected)[:5]
        raise RuntimeError(f"{path}/state.pt does not match the model ({cfg.model.clip}): e.g. {diff}")
    if cfg.train.distributed == "ddp":
        raw.load_state_dict(state["model"], strict=False)  # the teacher is rebuilt from the pretrained CLIP
        optimizer.load_state_dict(state["optimizer"])
    else:
        _fsdp_load(model, optimizer, state["model"], state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if accelerator.scaler is not None and state["scaler"]:
        accelerator.scaler.load_state_dict(state["scaler"])
    mine = torch.load(path / f"rng_rank{accelerator.process_index}.pt", map_location="cpu", weights_only=True)
    set_rng_state(mine["rng"])
    state["loader"] = mine["loader"]  # this rank's own data position
    return state


# --------------------------------------------------------------------------------------------------------- logging
class Log:
    """stdout lines, metrics.jsonl (one record per optimiser step, main process) and the accelerate trackers."""

    def __init__(self, accelerator: Accelerator, out: Path, every: int):
        self.acc, self.every = accelerator, every
        self.file = None
        if accelerator.is_main_process:
            path = out / "metrics.jsonl"
            torn = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
            self.file = open(path, "a")
            if torn:  # a run killed mid-line: start the resumed records on a line of their own
                self.file.write("\n")

    def step(self, record: dict, bar: tqdm | None) -> None:
        self.acc.log({f"train/{k}": v for k, v in record.items() if k not in ("step", "epoch")}, step=record["step"])
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.acc.is_main_process and record["step"] % self.every == 0:
            line = (f"epoch {record['epoch']} step {record['step']}: loss {record['loss']:.4f} (ce {record['ce']:.4f} "
                    f"dv {record['distill_visual']:.4f} dt {record['distill_text']:.4f}) lr {record['lr']:.3g} "
                    f"{record['clips_per_s']:.1f} clips/s")
            (bar.write if bar is not None else print)(line)

    def close(self):
        if self.file:
            self.file.close()


def flat_config(cfg: Config) -> dict:
    """Scalars only, for TensorBoard's hparams."""
    out = {}
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            for k, v in values.items():
                out[f"{section}.{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
        else:
            out[section] = values
    return out


# ----------------------------------------------------------------------------------------------------------- train
def train(cfg: Config, accelerator: Accelerator) -> None:
    out = Path(cfg.output_dir)
    ckpt_dir = out / "checkpoints"
    t = cfg.train
    if accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    # The data: this rank's share of the training split, in micro-batches.
    from pipeline.loader import build_loader
    accum = accumulation_steps(t.global_batch, t.micro_batch, accelerator.num_processes)
    loader = build_loader(split_paths(cfg.data)["train"],
                          loader_config(cfg, train=True, batch_size=t.micro_batch,
                                        device=loader_device(cfg, accelerator)),
                          rank=accelerator.process_index, world_size=accelerator.num_processes)
    steps_per_epoch = len(loader) // accum
    if steps_per_epoch == 0:
        raise RuntimeError(f"the training split has {len(loader)} micro-batches per process, fewer than the "
                           f"{accum} one optimiser step needs; lower train.global_batch")
    if len(loader) % accum:
        accelerator.print(f"note: {len(loader) % accum} micro-batch(es) per epoch do not fill an optimiser step "
                          f"and are skipped")
    total_steps = steps_per_epoch * t.epochs

    # The model: student + frozen teacher + projectors; same initial weights on every rank.
    set_seed(t.seed)
    m = cfg.model
    model = Froster.build(m.clip, m.pretrained, m.checkpoint, alpha=m.alpha, distill_weight=m.distill_weight,
                          temporal=m.temporal, boundary=m.boundary, quick_gelu=quick_gelu(cfg))
    check_crop(model, cfg)
    model.to(accelerator.device)
    model.set_classes(prompts.class_texts(loader.classes))  # tokenises prompts, caches the teacher's text once

    peak, final = scaled_lr(t)
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=peak, betas=t.betas, eps=t.eps)
    model, optimizer = accelerator.prepare(model, optimizer)
    # Our own per-optimiser-step schedule (not prepared: accelerate would step it once per process).
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(
        s, total=total_steps, warmup=steps_per_epoch * t.warmup_epochs, peak=peak, final=final) / peak)

    # Resume from the newest state, if any; otherwise a fresh start.
    start_epoch, start_step, global_step, state = 0, 0, 0, {}
    resume = latest_checkpoint(ckpt_dir)
    if resume is not None:
        state = load_checkpoint(resume, accelerator, model, optimizer, scheduler, cfg)
        start_epoch, start_step, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        if start_step == steps_per_epoch:
            start_epoch, start_step = start_epoch + 1, 0
        accelerator.print(f"resumed from {resume} (epoch {start_epoch + 1}, step {global_step})")
    else:
        set_seed(t.seed, device_specific=True)  # each rank its own stream (templates, ...), reproducibly
    if start_epoch >= t.epochs:
        accelerator.print(f"training already finished ({t.epochs} epochs) in {out}")
        return

    accelerator.init_trackers("tensorboard", config=flat_config(cfg))
    log = Log(accelerator, out, t.log_every)
    bar = tqdm(total=total_steps, initial=global_step, unit="step", dynamic_ncols=True,
               disable=not (t.progress and accelerator.is_main_process))
    accelerator.print(f"training {t.epochs} epochs x {steps_per_epoch} steps; {accelerator.num_processes} "
                      f"process(es) x {t.micro_batch} clips x {accum} accumulation = {t.global_batch} clips/step")

    model.train()
    for epoch in range(start_epoch, t.epochs):
        loader.set_epoch(epoch)
        if start_step:
            loader.load_state_dict(state["loader"])  # mid-epoch resume: skip the micro-batches already used
        batches = iter(loader)
        for step in range(start_step, steps_per_epoch):
            tic = time.perf_counter()
            sums = torch.zeros(4, device=accelerator.device)
            for micro in range(accum):
                batch = next(batches)
                # Gradients are all-reduced only on the last micro-batch of the step.
                sync = nullcontext() if micro == accum - 1 else accelerator.no_sync(model)
                clips = batch.clips.to(accelerator.device, non_blocking=True)  # no-op when the loader is there
                with sync:
                    o = model(clips, batch.labels.to(accelerator.device))
                    accelerator.backward(o.loss / accum)
                sums += torch.stack([o.loss, o.ce, o.distill_visual, o.distill_text]).detach().float() / accum
            if t.clip_grad > 0:
                accelerator.clip_grad_norm_(model.parameters(), t.clip_grad)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1

            loss, ce, dv, dt = accelerator.reduce(sums, reduction="mean").tolist()
            clips_per_s = t.global_batch / (time.perf_counter() - tic)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", clips_s=f"{clips_per_s:.1f}")
            log.step({"step": global_step, "epoch": epoch + 1, "loss": loss, "ce": ce, "distill_visual": dv,
                      "distill_text": dt, "lr": lr, "clips_per_s": clips_per_s,
                      "decode_errors": int(loader.stats.get("decode_errors", 0))}, bar)
            if t.save_every_steps and global_step % t.save_every_steps == 0 and step + 1 < steps_per_epoch:
                save_checkpoint(ckpt_dir / f"step_{global_step:08d}", accelerator, model, optimizer, scheduler,
                                loader, epoch=epoch, step_in_epoch=step + 1, global_step=global_step, cfg=cfg,
                                weights=False)
        start_step = 0
        save_checkpoint(ckpt_dir / f"epoch_{epoch + 1:03d}", accelerator, model, optimizer, scheduler, loader,
                        epoch=epoch, step_in_epoch=steps_per_epoch, global_step=global_step, cfg=cfg, weights=True)
    bar.close()
    log.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Train (then evaluate) FROSTER.", epilog="overrides: key.sub=value, "
                                 "e.g. train.epochs=3 model.pretrained=null data.splits=s3://bucket/splits")
    ap.add_argument("--config", required=True, help="YAML config (see model/configs/)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate (eval.weights) without training")
    ap.add_argument("--zero-shot", action="store_true", help="with --eval-only: the frozen original CLIP baseline")
    ap.add_argument("--weights", default=None, help="with --eval-only: a student weights file to evaluate")
    ap.add_argument("--no-eval", action="store_true", help="train only")
    ap.add_argument("overrides", nargs="*", help="key.sub=value")
    return ap.parse_args(argv)


def make_accelerator(cfg: Config) -> Accelerator:
    kwargs = {}
    if cfg.train.distributed == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin
        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(use_orig_params=True)
    return Accelerator(mixed_precision=cfg.train.mixed_precision, log_with="tensorboard",
                       project_dir=str(Path(cfg.output_dir)), **kwargs)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    if args.zero_shot:
        cfg.eval.zero_shot = True
    if args.weights:
        cfg.eval.weights = args.weights
    accelerator = make_accelerator(cfg)
    try:
        if not args.eval_only:
            train(cfg, accelerator)
        if args.eval_only or not args.no_eval:
            results = evaluate.run(cfg, accelerator)
            if accelerator.is_main_process:
                print(evaluate.markdown_table(results), end="")
    except (ConfigError, FileNotFoundError) as e:  # a wrong setting or a missing file: the message says which
        sys.exit(f"error: {e}")
    accelerator.end_training()  # flushes the trackers and ends the process group: last


if __name__ == "__main__":
    main()
