"""Time FROSTER training steps: our implementation vs a reference mode with the official code's costs.

    python tools/bench/train.py                                   # small CPU config
    python tools/bench/train.py --model ViT-B-16 --device gpu --batch-size 8 --num-frames 8 --classes 400

Reference mode: the teacher's text re-encoded every step, 77-token context, fp16 autocast with GradScaler,
explicit (non-SDPA) temporal attention, for-each AdamW. Every mode runs in its own process (FLOPs, clean peak
memory), with the same random-init weights, clips, labels, classes and template sequence. On a CPU the step times
come from one process that takes the modes' steps in turn (fair on a shared machine). Last line: `speedup: X.XX`
(ours vs reference clips/s).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from shards.cli import add_alias, setup_logging, tool_parser  # noqa: E402

# knobs: cache (teacher text), cut (truncate text), attn (temporal attention), amp (None|bf16|fp16), fused, compile
MODES = {
    "reference": dict(cache=False, cut=False, attn="math", amp="fp16", fused=False),
    "reference-fp32": dict(cache=False, cut=False, attn="math", amp=None, fused=False),  # fair on CPUs
    "exact": dict(cache=True, cut=True, attn="math", amp="fp16", fused=False),   # only the exact savings
    "ours": dict(cache=True, cut=True, attn="sdpa", amp="auto", fused=True),
    "ours-fp32": dict(cache=True, cut=True, attn="sdpa", amp=None, fused=True),
    "ours-bf16": dict(cache=True, cut=True, attn="sdpa", amp="bf16", fused=True),
    "ours-math": dict(cache=True, cut=True, attn="math", amp="auto", fused=True),
    "ours-unfused": dict(cache=True, cut=True, attn="sdpa", amp="auto", fused=False),
    "ours-compile": dict(cache=True, cut=True, attn="sdpa", amp="auto", fused=True, compile=True),
}
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "L4": 121.0}  # dense bf16
WORDS = ("playing riding jumping swimming throwing catching cooking dancing climbing washing brushing kicking "
         "golf guitar horse rope pool ball dough salsa rock car hair teeth football with the a on in").split()


def class_names(n: int) -> list[str]:
    """Deterministic action-like names of 1..6 words (K400's names are 1..6 words)."""
    g = torch.Generator().manual_seed(0)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (1 + i % 6,), generator=g)) for i in range(n)]


def setup(name: str, args: argparse.Namespace):
    """Build one mode: returns (step(i) -> loss, info). Same weights/clips/labels/classes in every mode."""
    from model.froster import Froster

    if args.threads:
        torch.set_num_threads(args.threads)

    knobs, dev = MODES[name], torch.device(args.device)
    amp = knobs["amp"]
    if amp == "auto":  # bf16 where the GPU has it; fp32 on CPUs (measured: bf16 autocast does not pay there)
        amp = "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else None
    torch.manual_seed(0)
    model = Froster.build(args.model, None, attn_impl=knobs["attn"], cache_teacher_text=knobs["cache"],
                          truncate_text=knobs["cut"]).to(dev)
    model.set_classes(class_names(args.classes))
    model.train()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-6, weight_decay=0.01, fused=knobs["fused"],
                            foreach=None if knobs["fused"] else True)
    scaler = torch.amp.GradScaler(dev.type) if amp == "fp16" else None
    size = model.student.clip.visual.image_size[0]
    g = torch.Generator().manual_seed(1)
    clips = torch.randn(args.batch, args.frames, 3, size, size, generator=g).to(dev)
    labels = torch.randint(args.classes, (args.batch,), generator=g).to(dev)
    if knobs.get("compile"):  # the video towers only: fixed shapes. The text's length varies with the template,
        model.student.encode_video = torch.compile(model.student.encode_video)  # which would recompile per step
        model.teacher.visual = torch.compile(model.teacher.visual)
    forward = model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def step(i: int) -> float:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = forward(clips, labels, template=i % 28).loss
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
        scaler.step(opt) if scaler else opt.step()
        if scaler:
            scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss.item()  # synchronises

    with torch.no_grad(), torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
        loss0 = model(clips, labels, template=0).loss.item()
    return step, dict(mode=name, amp=amp or "fp32", loss0=loss0, text_len=model.tokens.shape[-1])


def timed(step, i: int) -> float:
    t0 = time.perf_counter()
    step(i)
    return time.perf_counter() - t0


def run_mode(name: str, args: argparse.Namespace) -> dict:
    """In a fresh process: FLOPs of one step, peak memory, and (unless interleaved) the median step time."""
    from torch.utils.flop_counter import FlopCounterMode

    step, info = setup(name, args)
    counter = FlopCounterMode(display=False)
    with counter:
        step(0)
    for i in range(args.warmup):
        step(i + 1)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = [timed(step, args.warmup + 1 + i) for i in range(1 if args.interleave else args.steps)]
    peak = (torch.cuda.max_memory_allocated() if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    return dict(info, sec=sorted(times)[len(times) // 2], mem=peak, flops=counter.get_total_flops())


def _child(name, args, queue):
    queue.put(run_mode(name, args))


def interleaved_times(names: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Median step time per mode, the modes' steps taken in turn: on a shared machine every mode sees the same
    mix of load, so their ratios hold even when the absolute times drift."""
    steps = {name: setup(name, args)[0] for name in names}
    for name in names:
        for i in range(1 + args.warmup):
            steps[name](i)
    times = {name: [] for name in names}
    for i in range(args.steps):
        for name in names:
            times[name].append(timed(steps[name], 1 + args.warmup + i))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main() -> None:
    p = tool_parser(__doc__)
    p.add_argument("--model", default="frostline-small", help="open_clip / frostline config (random init)")
    p.add_argument("--device", default="cpu", type=lambda v: {"cuda": "gpu"}.get(v, v), choices=("cpu", "gpu"),
                   help="cpu | gpu (the first CUDA device; 'cuda' is accepted too)")
    p.add_argument("--batch-size", dest="batch", type=int, default=4, help="clips per step")
    p.add_argument("--num-frames", dest="frames", type=int, default=8, help="frames per clip")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--modes", default="reference,reference-fp32,exact,ours-bf16,ours",
                   help=f"comma list from {','.join(MODES)}; 'ours' and 'reference' make the speedup line")
    p.add_argument("--interleave", type=int, choices=(0, 1), default=None,
                   help="time the modes step by step in turn in one process (default: 1 on cpu, 0 on cuda)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: 1 on cpu: with every core busy, a descheduled OpenMP thread stalls "
                        "the others and the times become noise on a shared machine; 0 = torch's default)")
    p.add_argument("--peak-tflops", type=float, default=None, help="for MFU; default from the GPU's name")
    add_alias(p, "--batch", "--batch-size")
    add_alias(p, "--frames", "--num-frames")
    args = p.parse_args()
    setup_logging(args.quiet, args.verbose)
    args.device = "cuda" if args.device == "gpu" else "cpu"  # torch's spelling from here on
    names = args.modes.split(",")
    if args.threads is None:
        args.threads = 0 if args.device.startswith("cuda") else 1
    if args.interleave is None:
        args.interleave = int(not args.device.startswith("cuda"))
    ctx = mp.get_context("spawn")
    peak = args.peak_tflops
    if peak is None and args.device.startswith("cuda"):
        gpu = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in gpu), None)
    print(f"# {args.model}, batch {args.batch} x {args.frames} frames, {args.classes} classes, device {args.device}"
          f"{f', {args.threads} thread(s)' if args.threads else ''}, median of {args.steps} steps"
          f"{', modes interleaved' if args.interleave else ''}")
    print(f"{'mode':<14} {'precision':<9} {'text len':>8} {'ms/step':>9} {'clips/s':>8} {'peak MiB':>9} "
          f"{'GFLOP/step':>10} {'MFU':>6} {'loss@0':>9}")
    rows = {}
    for name in names:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, args, queue))
        proc.start()
        r = queue.get()
        proc.join()
        rows[name] = r
    if args.interleave:
        for name, sec in interleaved_times(names, args).items():
            rows[name]["sec"] = sec
    for name, r in rows.items():
        r.update(ms=r["sec"] * 1e3, clips=args.batch / r["sec"])
        mfu = f"{r['flops'] / (r['ms'] / 1e3) / (peak * 1e12):6.1%}" if peak else "     -"
        print(f"{name:<14} {r['amp']:<9} {r['text_len']:>8} {r['ms']:9.1f} {r['clips']:8.2f} {r['mem']:9.0f} "
              f"{r['flops'] / 1e9:10.1f} {mfu} {r['loss0']:9.5f}", flush=True)
    if "ours" in rows and "reference-fp32" in rows:
        print(f"speedup vs reference-fp32: {rows['ours']['clips'] / rows['reference-fp32']['clips']:.2f}")
    if "ours" in rows and "reference" in rows:
        print(f"speedup: {rows['ours']['clips'] / rows['reference']['clips']:.2f}")


if __name__ == "__main__":
    main()
