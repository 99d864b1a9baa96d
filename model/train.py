"""The FROSTER training recipe: read it top to bottom.

    accelerate launch --mixed_precision bf16 model/train.py --config model/configs/cross_k400.yaml [key=value ...]
    python model/train.py --config model/configs/demo.yaml train.epochs=2          # one process, CPU or GPU
    accelerate launch --mixed_precision bf16 model/train.py --config FILE --eval-only [--zero-shot] [--weights PATH]

One process per device (DDP by default, FSDP with ``train.distributed=fsdp``), micro-batches accumulated until
``train.global_batch`` clips make one AdamW step, a linear warm-up then cosine learning rate per optimiser step,
bf16 autocast. The objective is model/loss.py's; the model model/froster.py's. After every epoch
``output_dir/checkpoints/epoch_NNN/`` holds the student's weights and a resume state (model/checkpoint.py);
re-running the same command resumes from the newest state exactly. After the last epoch the weights of epochs
``train.average_from``..last are averaged (``swa_2_22.pt``) and evaluated (model/evaluate.py), writing
``results.json`` and ``results.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

if __package__ in (None, ""):  # `python model/train.py` / `accelerate launch model/train.py` run this as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import omp  # noqa: F401,E402  (first: OpenMP threads must sleep while they wait; before torch)

import torch  # noqa: E402
import yaml  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.logging import get_logger  # noqa: E402
from accelerate.utils import set_seed  # noqa: E402
from tqdm import tqdm  # noqa: E402
from tqdm.contrib.logging import logging_redirect_tqdm  # noqa: E402

from model import evaluate, fit, prompts  # noqa: E402
from model.build import build_model, image_size  # noqa: E402
from model.checkpoint import check_resumable, latest_checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from model.config import Config, load_config  # noqa: E402
from model.data import build_loader, data_health, split_paths  # noqa: E402
from model.fidelity import startup_notes  # noqa: E402
from model.launch import die_with_parent, is_main_rank, launched, make_accelerator  # noqa: E402
from model.optim import accumulation_steps, adamw, lr_schedule, param_groups  # noqa: E402
from model.sharding import average_replicated_grads, clip_grad_norm_, own_fsdp, shard  # noqa: E402
from model.train_log import MetricsLog, flat_config  # noqa: E402
from shards.cli import add_logging_flags, run, setup_logging  # noqa: E402
from shards.storage.lock import output_lock  # noqa: E402

log = get_logger("model.train")


def train(cfg: Config, accelerator: Accelerator) -> None:
    out = Path(cfg.output_dir)
    ckpt_dir = out / "checkpoints"
    t = cfg.train
    # A resume must have this run's settings: checked before anything is written, so a refused resume leaves
    # the folder describing the run that really happened.
    resume = latest_checkpoint(ckpt_dir)
    state = check_resumable(resume, cfg, accelerator.num_processes) if resume is not None else {}

    for note in startup_notes(cfg):  # the official switch; a learning rate scaled away from the preset's
        log.warning(note)

    # The data: this rank's share of the training split, in micro-batches. The model: student + frozen teacher +
    # projectors; same initial weights on every rank. Whatever of the config does not fit either, in one message.
    loader = build_loader(split_paths(cfg.data)["train"], cfg, accelerator, train=True, batch_size=t.micro_batch)
    set_seed(t.seed)
    model = build_model(cfg, check=False)
    fit.check(fit.schedule_problems(cfg) + fit.batch_problems(cfg, len(loader), accelerator.num_processes)
              + fit.crop_problems(cfg, image_size(model), model.clip_info.name))
    if accelerator.is_main_process:  # only a configuration that runs describes the folder
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    accum = accumulation_steps(t.global_batch, t.micro_batch, accelerator.num_processes)
    steps_per_epoch = len(loader) // accum
    if len(loader) % accum:
        log.warning(f"{len(loader) % accum} micro-batch(es) per epoch do not fill an optimiser step and are skipped")
    total_steps = steps_per_epoch * t.epochs
    model = model.to(accelerator.device)
    model.set_classes(prompts.class_texts(loader.classes))  # tokenises prompts, caches the teacher's text once

    # The groups are chosen by the parameters' shapes, so before any sharding flattens them.
    groups = param_groups(model, t.weight_decay, t.decay_scalars)
    sharded_here = own_fsdp(cfg, accelerator)  # FSDP on CPU processes: frostline wraps it (model/sharding.py)
    if sharded_here:
        model = shard(model, cfg, accelerator)

    optimizer = adamw(groups, t)  # the scaled peak lr, the config's betas and eps
    if sharded_here:
        optimizer = accelerator.prepare(optimizer)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    # Our own per-optimiser-step schedule (not prepared: accelerate would step it once per process).
    scheduler = lr_schedule(optimizer, t, steps_per_epoch)

    # Resume from the newest state, if any; otherwise a fresh start.
    start_epoch, start_step, global_step = 0, 0, 0
    if resume is not None:
        state = load_checkpoint(resume, accelerator, model, optimizer, scheduler, cfg, state)
        start_epoch, start_step, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        if start_step == steps_per_epoch:
            start_epoch, start_step = start_epoch + 1, 0
        log.info(f"resumed from {resume} (epoch {start_epoch + 1}, step {global_step})")
    else:
        set_seed(t.seed, device_specific=True)  # each rank its own stream (templates, ...), reproducibly
    if start_epoch >= t.epochs:
        log.info(f"training already finished ({t.epochs} epochs) in {out}")
        return

    accelerator.init_trackers("tensorboard", config=flat_config(cfg))
    metrics = MetricsLog(accelerator, out, t.log_every, log)
    bar = tqdm(total=total_steps, initial=global_step, unit="step", dynamic_ncols=True,
               disable=not (t.progress and accelerator.is_main_process))
    log.info(f"training {t.epochs} epochs x {steps_per_epoch} steps; {accelerator.num_processes} process(es) x "
             f"{t.micro_batch} clips x {accum} accumulation = {t.global_batch} clips/step")

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
            if sharded_here:
                average_replicated_grads(model)
            if t.clip_grad > 0:
                clip_grad_norm_(accelerator, model, t.clip_grad)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1

            loss, ce, dv, dt = accelerator.reduce(sums, reduction="mean").tolist()
            clips_per_s = t.global_batch / (time.perf_counter() - tic)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", clips_s=f"{clips_per_s:.1f}")
            metrics.step({"step": global_step, "epoch": epoch + 1, "loss": loss, "ce": ce, "distill_visual": dv,
                          "distill_text": dt, "lr": lr, "clips_per_s": clips_per_s,
                          "decode_errors": int(loader.stats.get("decode_errors", 0))})
            if t.save_every_steps and global_step % t.save_every_steps == 0 and step + 1 < steps_per_epoch:
                save_checkpoint(ckpt_dir / f"step_{global_step:08d}", accelerator, model, optimizer, scheduler,
                                loader, epoch=epoch, step_in_epoch=step + 1, global_step=global_step, cfg=cfg,
                                weights=False)
        start_step = 0
        report_data(data_health(loader, accelerator), epoch + 1, out, accelerator)
        save_checkpoint(ckpt_dir / f"epoch_{epoch + 1:03d}", accelerator, model, optimizer, scheduler, loader,
                        epoch=epoch, step_in_epoch=steps_per_epoch, global_step=global_step, cfg=cfg, weights=True)
    bar.close()
    metrics.close()


def report_data(health: dict, epoch: int, out: Path, accelerator: Accelerator) -> None:
    """The epoch's data health: a log line (a warning when samples were skipped) and train_data.json."""
    skipped = f"{health['skipped']} skipped ({', '.join(health['skipped_keys'][:5])})" if health["skipped"] else \
        "none skipped"
    read = f"{health['read']} samples read, " if "read" in health else ""
    (log.warning if health["skipped"] else log.info)(f"epoch {epoch}: training split of {health['rows']} rows: "
                                                     f"{read}{skipped}")
    if accelerator.is_main_process:
        (out / "train_data.json").write_text(json.dumps({"epoch": epoch, **health}, indent=1) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Train (then evaluate) FROSTER.", epilog="overrides: key.sub=value, "
                                 "e.g. train.epochs=3 model.pretrained=null data.splits=s3://bucket/splits")
    ap.add_argument("--config", required=True, help="YAML config (see model/configs/)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate (eval.weights) without training")
    ap.add_argument("--zero-shot", action="store_true", help="with --eval-only: the frozen original CLIP baseline")
    ap.add_argument("--weights", default=None, help="with --eval-only: a student weights file to evaluate")
    ap.add_argument("--no-eval", action="store_true", help="train only")
    ap.add_argument("--allow-partial", action="store_true", help="with --eval-only: evaluate an unfinished run")
    add_logging_flags(ap)
    ap.add_argument("overrides", nargs="*", help="key.sub=value")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    if launched():
        die_with_parent()  # a kill -9 of `accelerate launch` takes this rank with it
    cfg = load_config(args.config, args.overrides, defer_fit=not args.eval_only)  # train() checks the fit
    cfg.eval.zero_shot = cfg.eval.zero_shot or args.zero_shot
    cfg.eval.allow_partial = cfg.eval.allow_partial or args.allow_partial
    if args.weights:
        cfg.eval.weights = args.weights
    progress = logging_redirect_tqdm() if cfg.train.progress else nullcontext()  # log lines above the bar
    with output_lock(cfg.output_dir) if is_main_rank() else nullcontext(), progress:  # one live run per output_dir
        accelerator = make_accelerator(cfg, tensorboard=True)
        if not args.eval_only:
            train(cfg, accelerator)
        if args.eval_only or not args.no_eval:
            results = evaluate.run(cfg, accelerator)
            if accelerator.is_main_process:
                print(evaluate.markdown_table(results), end="")
    accelerator.end_training()  # flushes the trackers and ends the process group: last


if __name__ == "__main__":
    sys.exit(run(main))
