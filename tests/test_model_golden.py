"""The FROSTER loss sequence is pinned: a few AdamW steps of the demo's tiny CLIP on generated clips, fp32.

The values were recorded from the code before the restructuring of issue 13 (loss in model/loss.py, recipe
pieces in model/optim.py); any change to the objective, the model, the parameter groups or the schedule moves
them. Tolerance: relative 1e-5 on terms of order 1 (robust to another CPU's rounding); the distillation terms,
which start at ~0 by construction (the projectors start as the identity), are compared with an absolute
tolerance scaled to the total loss, never relatively.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from model.froster import Froster
from model.optim import lr_at, param_groups

CLASSES = ["red circle moving left", "blue square moving right", "green triangle moving up", "red square still"]

# [loss, ce, distill_visual, distill_text] per step, recorded from the code before the change (commit d9f52d1)
GOLDEN = [
    [1.7313196659088135, 1.7212287187576294, 0.005045592784881592, -8.940696716308594e-08],
    [1.6324095726013184, 1.623610258102417, 0.004397865384817123, 1.8030405044555664e-06],
    [1.282312035560608, 1.24236261844635, 0.006049398332834244, 0.013925313949584961],
    [2.002336025238037, 1.9302351474761963, 0.008150909096002579, 0.02789948880672455],
    [1.4275230169296265, 1.340646505355835, 0.010054249316453934, 0.03338401019573212],
]


def losses(steps: int = 5) -> list[list[float]]:
    torch.manual_seed(0)
    model = Froster.build("frostline-tiny", None)
    model.set_classes(CLASSES)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    out = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total=steps, warmup=1, peak=2e-4, final=2e-6)
        clips = torch.randn(4, 4, 3, 64, 64, generator=g)
        labels = torch.randint(4, (4,), generator=g)
        o = model(clips, labels, template=(7 * step) % 28)
        o.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.append([o.loss.item(), o.ce.item(), o.distill_visual.item(), o.distill_text.item()])
    return out


def test_golden_loss_sequence():
    got = losses(len(GOLDEN))
    for step, (g, want) in enumerate(zip(got, GOLDEN)):
        loss, ce = want[0], want[1]
        assert g[0] == pytest.approx(loss, rel=1e-5), f"step {step}: loss {g[0]} != {loss}"
        assert g[1] == pytest.approx(ce, rel=1e-5), f"step {step}: ce {g[1]} != {ce}"
        for i, name in ((2, "distill_visual"), (3, "distill_text")):
            assert g[i] == pytest.approx(want[i], abs=1e-5 * loss), f"step {step}: {name} {g[i]} != {want[i]}"
    assert got[-1][3] > 1e-2  # by the last step the text projector really acts: the check above is not vacuous
