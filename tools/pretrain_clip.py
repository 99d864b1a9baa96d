#!/usr/bin/env python
"""Pre-train a tiny CLIP on captioned frames of the generated world (shards/generated/world.py), image-text only.

    python tools/pretrain_clip.py --out world_clip.pt                 # defaults: a few minutes on 2 CPU cores

Real CLIP learned its words from captioned photos; this one learns colour, shape, size, pattern, count, position,
background and motion words from captioned frames of the world (motion shows in a frame through the world's
afterimages, as real CLIP grounds "running" in still photos). `--no-afterimages` pre-trains on frames without them:
no frame shows a motion and no caption names one, so the motion words stay untrained tokens (the 8 base class
names of docs/world.md then get text features with cosine 0.99 to each other, which fine-tuning must pull apart:
the setting of tools/bench_fidelity.py, whose zero-shot base accuracy is then chance). Hard negatives: groups of
scenes that differ only in shape and motion (colour, without afterimages). The loss is CLIP's: symmetric InfoNCE
over the batch with a learned temperature.

Held-out combinations: a fixed set of (colour, shape) pairs (`HELD_OUT`, one per colour, none of them an experiment
class) never appears in pre-training. The zero-shot accuracy on frames of those pairs, among the captions of all
54 colour x shape pairs (chance 1.9 %; the colour word alone gets 16.7 %), is the checkpoint's test of
compositional generalisation; it is printed for the untrained and the trained model and stored in the sidecar
JSON (docs/world.md has the measured values).

Determinism: everything is drawn from `--seed` (world scenes, captions, batches, initial weights), and the CPU runs
a fixed number of threads (`--threads`): the same command on the same machine writes the same weights. Output:
`--out` (an open_clip checkpoint that `model.clip.build_clip(name, checkpoint=...)` loads, written atomically) and
`--out` with `.json` (settings, accuracies, wall time). An existing output with the same settings is reused.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model import kernels  # noqa: F401,E402  (before torch: the same CPU kernels on every x86-64 machine)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from model.inputs import at_least, positive_float, positive_int  # noqa: E402
from shards.generated import world  # noqa: E402

MODEL = "frostline-world"
# (colour, shape) pairs pre-training never shows: one per colour, every shape held out at least once
# (none of them is a class of the base-to-novel experiment: world.BASE_CLASSES, world.NOVEL_CLASSES)
HELD_OUT = tuple((c, world.SHAPES[(i + 1) % len(world.SHAPES)]) for i, c in enumerate(world.COLOURS))
GROUP = 4                                                 # scenes per hard-negative group
DEFAULTS = {"steps": 600, "batch": 128, "images": 3000, "captions": 4, "lr": 2e-3, "seed": 0, "threads": 2,
            "frames": 16, "model": MODEL, "afterimages": True}
ARG_TYPES = {"steps": positive_int, "batch": positive_int, "images": positive_int, "captions": positive_int,
             "lr": positive_float, "seed": at_least(0, 2**32 - 1), "threads": positive_int, "frames": at_least(world.GHOSTS[-1][0] + 2)}
FLAGS = {"batch": "batch-size"}  # the option's name where it differs from the keyword
HELP = {"steps": "optimiser steps", "batch": "captioned frames per step", "images": "captioned frames rendered",
        "captions": "captions per frame", "lr": "AdamW learning rate", "seed": "seed of everything drawn",
        "threads": "CPU threads (fixed, for determinism)", "frames": "length of the world video a frame is taken from",
        "model": "model config (model/model_configs/)",
        "afterimages": "draw the afterimage outlines (motion visible in one frame)"}


def say(message: str) -> None:
    print(message, flush=True)


def normalise_images(frames: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> CLIP-normalised float [N, 3, H, W] (the pipeline's mean and std)."""
    from pipeline.sampling import CLIP_MEAN, CLIP_STD
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def world_frames(n: int, rng: random.Random, *, size: int, frames: int, held_out: bool, group: int = 1,
                 afterimages: bool = False):
    """n (scene, rendered frame, frame) from random scenes: excluding HELD_OUT pairs, or only those pairs.

    With group > 1 the frames come in groups of `group` scenes that differ only in shape and in motion (with
    afterimages, which show it) or colour (without): same background, place, ... Drawn into one batch, they are
    the hard negatives that make the contrastive loss learn shape words, not colour alone (a large web batch gives
    real CLIP such pairs by chance)."""
    from dataclasses import replace
    out = []
    other = "motion" if afterimages else "colour"
    while len(out) < n:
        s = replace(world.sample_scene(rng), afterimage=afterimages)
        members = [s]
        while len(members) < group:
            changed = rng.choice(("shape", other, "both"))
            v = replace(s, shape=rng.choice([x for x in world.SHAPES if x != s.shape]) if changed != other
                        else s.shape)
            if changed != "shape" and afterimages:
                v = replace(v, motion=rng.choice([m for m in world.VISIBLE_IN_A_FRAME if m != s.motion]))
            elif changed != "shape":
                v = replace(v, colour=rng.choice([c for c in world.COLOURS if c != s.colour]))
            members.append(v)
        if any(((m.colour, m.shape) in HELD_OUT) != held_out or not world.fits(m, size, size, frames)
               for m in members):
            continue
        t = rng.randrange(world.GHOSTS[-1][0], frames)       # late enough for the afterimage to be there
        for m in members:
            r = world.render(m, size, size, frames, times=[t])
            out.append((m, r, r.frames[0]))
    return out[:n]


def zero_shot_accuracy(model, tokenizer, images: torch.Tensor, labels: torch.Tensor, texts: list[str]) -> float:
    """Percent of images whose most similar text is their own (CLIP's zero-shot classification)."""
    from model.clip import encode_text
    model.eval()
    with torch.no_grad():
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = encode_text(model, tokenizer(texts))
        pred = (img @ txt.T).argmax(dim=1)
    return 100.0 * (pred == labels).float().mean().item()


def held_out_set(seed: int, size: int, frames: int, per_pair: int = 25, afterimages: bool = False):
    """Frames of the HELD_OUT pairs, their labels and the class texts: every colour x shape pair ('a photo of a red
    square.'), so that colour alone gets 1/6 of them right (chance is 1/48)."""
    rng = random.Random(f"{seed}/held-out")
    items = world_frames(per_pair * len(HELD_OUT) * 3, rng, size=size, frames=frames, held_out=True,
                         afterimages=afterimages)
    pairs = list(HELD_OUT)
    counts = {p: 0 for p in pairs}
    picked = []
    for s, _, img in items:
        p = (s.colour, s.shape)
        if counts[p] < per_pair:
            counts[p] += 1
            picked.append((pairs.index(p), img))
    every = [(c, s) for c in world.COLOURS for s in world.SHAPES]
    labels = torch.tensor([every.index(pairs[label]) for label, _ in picked])
    images = normalise_images(np.stack([img for _, img in picked]))
    texts = [f"a photo of a {c} {s}." for c, s in every]
    return images, labels, texts


def pretrain(out: Path, *, steps: int, batch: int, images: int, captions: int, lr: float, seed: int, threads: int,
             frames: int, model: str = MODEL, afterimages: bool = False, log=say) -> dict:
    """Train and write the checkpoint + sidecar; returns the sidecar's content."""
    from model.clip import build_clip, encode_text, export_clip

    settings = {"steps": steps, "batch": batch, "images": images, "captions": captions, "lr": lr, "seed": seed,
                "threads": threads, "frames": frames, "model": model, "afterimages": afterimages,
                "kernels": kernels.pinned()}
    side = out.with_suffix(".json")
    if out.exists() and side.exists():
        info = json.loads(side.read_text())
        if info.get("settings") == settings:
            log(f"pre-trained CLIP already there: {out} (held-out zero-shot {info['zero_shot_trained']:.1f} %)")
            return info
    start = time.time()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    clip, tokenizer = build_clip(model, pretrained=None)
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size

    # the data: a fixed pool of captioned frames, several captions per frame, tokenised once
    rng = random.Random(f"{seed}/pretrain")
    pool = world_frames(images, rng, size=size, frames=frames, held_out=False, group=GROUP,
                        afterimages=afterimages)
    x_all = normalise_images(np.stack([img for _, _, img in pool]))
    texts = [world.frame_caption(s, r, 0, rng) for s, r, _ in pool for _ in range(captions)]
    tokens = tokenizer(texts).view(len(pool), captions, -1)
    test_x, test_y, test_texts = held_out_set(seed, size, frames, afterimages=afterimages)
    before = zero_shot_accuracy(clip, tokenizer, test_x, test_y, test_texts)
    log(f"pre-training {model} on {len(pool)} captioned frames ({len(texts)} captions, e.g. {texts[0]!r}); "
        f"held-out zero-shot before: {before:.1f} % (chance {100 / len(test_texts):.1f} %) "
        f"[data {time.time() - start:.0f} s]")

    decay = [p for p in clip.parameters() if p.ndim >= 2]
    no_decay = [p for p in clip.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / steps))))
    gen = torch.Generator().manual_seed(seed)
    clip.train()
    groups = len(pool) // GROUP
    for step in range(steps):
        pick = torch.randperm(groups, generator=gen)[:batch // GROUP]      # whole groups: hard negatives together
        idx = (pick[:, None] * GROUP + torch.arange(GROUP)).flatten()
        which = torch.randint(captions, (len(idx),), generator=gen)
        tok = tokens[idx, which]
        tok = tok[:, :int((tok != 0).sum(1).max())]            # exact: the text tower is causal, pooled at EOT
        img = F.normalize(clip.encode_image(x_all[idx]), dim=-1)
        txt = encode_text(clip, tok)
        logits = clip.logit_scale.exp() * img @ txt.T
        target = torch.arange(len(idx))
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100))
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            log(f"  step {step + 1}/{steps}: loss {loss.item():.3f} ({time.time() - start:.0f} s)")
    after = zero_shot_accuracy(clip, tokenizer, test_x, test_y, test_texts)
    log(f"held-out zero-shot after: {after:.1f} % (before {before:.1f} %)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    export_clip(clip.state_dict(), tmp, model)
    os.replace(tmp, out)
    info = {"settings": settings, "model": model, "held_out": [list(p) for p in HELD_OUT],
            "zero_shot_untrained": before, "zero_shot_trained": after, "chance": 100 / len(test_texts),
            "final_loss": loss.item(), "wall_s": time.time() - start}
    side.write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    import argparse

    from shards.cli import add_alias, setup_logging, tool_parser
    ap = tool_parser(__doc__)
    ap.add_argument("--out", required=True, help="checkpoint file to write (and OUT.json beside it)")
    for k, v in DEFAULTS.items():
        if isinstance(v, bool):
            ap.add_argument(f"--{k}", action=argparse.BooleanOptionalAction, default=v, help=HELP[k])
        else:
            ap.add_argument(f"--{FLAGS.get(k, k)}", dest=k, type=ARG_TYPES.get(k, type(v)), default=v, help=HELP[k])
    add_alias(ap, "--batch", "--batch-size")
    a = vars(ap.parse_args(argv))
    setup_logging(a.pop("quiet"), a.pop("verbose"))
    if a["batch"] % GROUP or a["batch"] > a["images"]:
        ap.error(f"--batch-size {a['batch']} must be a multiple of {GROUP} (scenes per hard-negative group) and at "
                 f"most --images {a['images']}")
    out = Path(a.pop("out"))
    pretrain(out, **a)
    return 0


if __name__ == "__main__":
    from shards.cli import run
    sys.exit(run(main))
