"""Every method fact of FROSTER that frostline reproduces, pinned: templates, prompt composition, presets, the
projectors, neighbour attention in every block, evaluation precision, and what the official switch changes.

Each test names the fact and checks it where a user meets it: a preset through load_config, build_model, the
optimiser and schedule train.py builds, the accelerator it launches, the model's own forward. docs/fidelity.md
lists them with the official value and its source file.
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model import prompts
from model.build import build_model
from model.clip import encode_text
from model.config import load_config
from model.data import loader_config
from model.evaluate import eval_precision
from model.fidelity import official_precision, resolve, startup_notes
from model.froster import Froster, ResidualProjector
from model.launch import make_accelerator
from model.optim import adamw, lr_schedule, param_groups, scaled_lr
from shards import splits
from shards.protocols.names import k400_names

CONFIGS = Path(__file__).resolve().parents[1] / "model" / "configs"

# The official templates (slowfast/models/temporalclip_video_model.py, text_prompt), in their order.
OFFICIAL_TEMPLATES = [
    "a photo of {}.", "a photo of a person {}.", "a photo of a person using {}.", "a photo of a person doing {}.",
    "a photo of a person during {}.", "a photo of a person performing {}.", "a photo of a person practicing {}.",
    "a video of {}.", "a video of a person {}.", "a video of a person using {}.", "a video of a person doing {}.",
    "a video of a person during {}.", "a video of a person performing {}.", "a video of a person practicing {}.",
    "a example of {}.", "a example of a person {}.", "a example of a person using {}.",
    "a example of a person doing {}.", "a example of a person during {}.", "a example of a person performing {}.",
    "a example of a person practicing {}.",
    "a demonstration of {}.", "a demonstration of a person {}.", "a demonstration of a person using {}.",
    "a demonstration of a person doing {}.", "a demonstration of a person during {}.",
    "a demonstration of a person performing {}.", "a demonstration of a person practicing {}.",
]
ENTRIES = ["Archery: someone draws a bow and releases an arrow at a round target",
           "Tai Chi: slow, flowing martial-art movements done standing in a park",
           "Typing"]                                                    # a class without a description


def test_the_28_templates_exact_strings_in_order():
    assert list(prompts.TEMPLATES) == OFFICIAL_TEMPLATES
    assert prompts.ALL_TEMPLATES == tuple(OFFICIAL_TEMPLATES) + ("{}",) and prompts.BARE_INDEX == 28


def test_composition_is_the_official_one():
    table = prompts.prompt_table(ENTRIES)
    for i, t in enumerate(OFFICIAL_TEMPLATES):
        assert table[i][0] == t.format("Archery") + " " + ENTRIES[0]           # template(Name) + " " + entry
        assert table[i][1] == t.format("Tai Chi") + " " + ENTRIES[1]
        assert table[i][2] == t.format("Typing")                               # frostline: the name once
    assert table[28] == ENTRIES                                                # the bare entry
    official = prompts.prompt_table(ENTRIES, official=True)
    assert [r[:2] for r in official] == [r[:2] for r in table] and official[28] == ENTRIES
    assert official[0][2] == "a photo of Typing. Typing"                       # what the official code writes
    zs = prompts.zero_shot_table(ENTRIES)                                      # the official zero-shot baseline
    assert len(zs) == 28 and zs[3] == [OFFICIAL_TEMPLATES[3].format(n) for n in ("Archery", "Tai Chi", "Typing")]
    assert prompts.class_texts([(1, "TaiChi", ENTRIES[1]), (0, "Archery", ""), (2, "apply_eye_makeup", None)]) == [
        "Archery", ENTRIES[1], "apply eye makeup"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Froster.build("frostline-tiny", None)


def test_training_and_evaluation_text_with_descriptions(tiny):
    """Training: one template + the bare entry, averaged; evaluation: the 29 prompts, averaged."""
    model = copy.deepcopy(tiny)
    model.set_classes(ENTRIES)
    clip, tok = model.student.clip, model.tokenizer
    j = 9
    with torch.no_grad():
        got = model._student_class_text(j)
        a = encode_text(clip, tok([OFFICIAL_TEMPLATES[j].format(e.split(":")[0]) + (" " + e if ":" in e else "")
                                   for e in ENTRIES]))
        b = encode_text(clip, tok(ENTRIES))
        torch.testing.assert_close(got, F.normalize(a + b, dim=-1), rtol=1e-5, atol=1e-6)
        model.eval()
        each = torch.stack([encode_text(clip, tok(row)) for row in prompts.prompt_table(ENTRIES)])
        torch.testing.assert_close(model.class_features(), F.normalize(each.mean(0), dim=-1), rtol=1e-5, atol=1e-6)


def test_a_prompt_longer_than_77_tokens_is_an_error_naming_the_class(tiny):
    model = copy.deepcopy(tiny)
    long = "Juggling: " + " ".join(["balls"] * 64)          # 67 tokens bare, 78 with the longest templates
    message = r"class 'Juggling': prompt 'a photo of a person using Juggling\. Juggling: balls.* longer than CLIP's 77"
    with pytest.raises(ValueError, match=message):
        model.set_classes([ENTRIES[0], long])
    model.set_classes([ENTRIES[0], "Juggling: " + " ".join(["balls"] * 63)])   # exactly 77: allowed
    assert model.tokens.shape[-1] == 77


def test_exact_savings_hold_with_descriptions(tiny):
    """The cut at the longest real prompt changes no feature (the text tower is causal and pools end-of-text)."""
    cut = copy.deepcopy(tiny).eval()
    full = copy.deepcopy(tiny).eval()
    full.truncate_text = False
    for m in (cut, full):
        m.set_classes(ENTRIES)
    assert cut.tokens.shape[-1] < 77 == full.tokens.shape[-1]
    with torch.no_grad():
        torch.testing.assert_close(cut.class_features(), full.class_features(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cut.class_features(zero_shot=True), full.class_features(zero_shot=True),
                                   rtol=1e-5, atol=1e-6)


PRESETS = {  # name: (global batch, epochs, average_from, eval weights) from the official scripts
    "cross_k400": (64, 22, 2, "average"), "b2n_k400": (32, 12, 2, "average"), "b2n_hmdb51": (32, 12, 2, "average"),
    "b2n_ucf101": (64, 12, 2, "average"), "b2n_ssv2": (32, 12, 2, "last"),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_the_official_scripts(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    batch, epochs, average_from, weights = PRESETS[name]
    t, d, m = cfg.train, cfg.data, cfg.model
    assert (t.global_batch, t.epochs, t.warmup_epochs, t.average_from, cfg.eval.weights) == (
        batch, epochs, 2, average_from, weights)
    assert scaled_lr(t) == pytest.approx((3.33e-6, 3.33e-8))                   # never scaled at the preset's batch
    assert (t.weight_decay, t.clip_grad, t.betas, t.eps) == (0.01, 1.0, (0.9, 0.999), 1e-8)
    assert (d.num_frames, d.frame_stride, d.sampling, tuple(d.short_side_range), d.crop_size, d.num_views) == (
        8, 16, "dense", (224, 256), 224, 3)
    assert (m.alpha, m.distill_weight) == (0.1, 2.0)                          # alpha and lambda
    assert (m.temporal, m.boundary) == (None, None)                           # the weights decide
    assert cfg.eval.precision == "fp32"
    assert not startup_notes(cfg)                                              # nothing scaled, no switch


def tiny_preset(name: str, *overrides: str):
    """A preset as a user loads it, on the tiny CLIP (random weights, 64-pixel crops) this machine can run."""
    return load_config(CONFIGS / f"{name}.yaml", ["model.pretrained=null", "model.clip=frostline-tiny",
                                                  "data.crop_size=64", *overrides])


CLIPS = torch.randn(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("overrides, alpha, lam", [((), 0.1, 2.0),
                                                   (("model.alpha=0.3", "model.distill_weight=0.5"), 0.3, 0.5)])
def test_alpha_and_lambda_reach_the_model(overrides, alpha, lam):
    """The preset's alpha and lambda (or the user's) are the ones build_model's projectors and loss use."""
    torch.manual_seed(0)
    model = build_model(tiny_preset("b2n_k400", *overrides))
    for p in (model.proj_v, model.proj_t):
        nn.init.normal_(p.fc2.weight, std=0.5)                                  # a trained, nonzero projector
    z = F.normalize(torch.randn(4, model.proj_v.fc1.in_features), dim=-1)
    with torch.no_grad():
        for p in (model.proj_v, model.proj_t):
            torch.testing.assert_close(p(z), z + alpha * p.fc2(F.gelu(p.fc1(z))))
    model.set_classes(ENTRIES)
    with torch.no_grad():
        out = model(CLIPS, torch.tensor([0, 2]), template=4)
    assert out.loss.item() == pytest.approx((out.ce + lam * (out.distill_visual + out.distill_text)).item(),
                                            rel=1e-6)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_train_builds_the_official_adamw_and_schedule_from_every_preset(name):
    """The optimiser train.py builds (model.optim.adamw over param_groups) and its per-step schedule."""
    cfg = tiny_preset(name)
    t = cfg.train
    optimizer = adamw(param_groups(build_model(cfg), t.weight_decay, t.decay_scalars), t)
    assert type(optimizer) is torch.optim.AdamW
    decay, no_decay = optimizer.param_groups
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    for g in optimizer.param_groups:
        assert (g["betas"], g["eps"], g["amsgrad"]) == ((0.9, 0.999), 1e-8, False)
    steps = 5                                                                  # optimiser steps per epoch
    schedule = lr_schedule(optimizer, t, steps)
    lrs = []
    for _ in range(steps * t.epochs + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    warm = steps * 2                                                           # 2 warm-up epochs, per step
    assert lrs[0] == pytest.approx(3.33e-8) and lrs[warm] == pytest.approx(3.33e-6)
    assert lrs[warm // 2] == pytest.approx((3.33e-8 + 3.33e-6) / 2)          # linear warm-up
    mid = warm + (steps * t.epochs - warm) // 2
    if (steps * t.epochs - warm) % 2 == 0:                                     # cosine: half-way at the middle
        assert lrs[mid] == pytest.approx((3.33e-8 + 3.33e-6) / 2)
    assert lrs[-1] == pytest.approx(3.33e-8) and all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:]))


def test_projector_init_first_kaiming_normal_no_bias_second_zero():
    torch.manual_seed(0)
    p = ResidualProjector(512)
    assert p.fc1.bias is None and p.fc2.bias is None
    assert torch.count_nonzero(p.fc2.weight) == 0
    w = p.fc1.weight.detach().double().flatten()
    std = (2.0 / 512) ** 0.5                                                 # Kaiming normal, fan_in, ReLU gain
    assert abs(w.mean().item()) < 0.01 * std * 10 and w.std().item() == pytest.approx(std, rel=0.01)
    inside = (w.abs() < std).double().mean().item()                          # a normal, not a uniform: 68.3 %
    assert inside == pytest.approx(0.6827, abs=0.005)
    z = torch.randn(4, 512)
    torch.testing.assert_close(p(z), z)                                       # the identity at step 0


def reference_block(block, x: torch.Tensor, frames: int, boundary: str) -> torch.Tensor:
    """One ViT block computed the way the official code describes it, written out here (no frostline code): the
    queries of frame t attend to the tokens of frames t-1, t, t+1; past either end, zero tokens (`zeros`) or
    nothing (`mask`); then CLIP's own output projection, residuals and MLP."""
    attn, (bt, length, dim) = block.attn, x.shape
    heads = attn.num_heads
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).split(dim, dim=-1)
    out = torch.zeros_like(x)
    for i in range(bt):
        clip, t = divmod(i, frames)
        keys, values = [], []
        for n in (t - 1, t, t + 1):
            if 0 <= n < frames:
                keys.append(k[clip * frames + n])
                values.append(v[clip * frames + n])
            elif boundary == "zeros":
                keys.append(torch.zeros_like(k[i]))
                values.append(torch.zeros_like(v[i]))
        kk, vv = torch.cat(keys), torch.cat(values)                             # [n * L, D]
        for h in range(heads):
            part = slice(h * dim // heads, (h + 1) * dim // heads)
            w = torch.softmax(q[i, :, part] @ kk[:, part].T / math.sqrt(dim // heads), dim=-1)
            out[i, :, part] = w @ vv[:, part]
    x = x + block.ls_1(F.linear(out, attn.out_proj.weight, attn.out_proj.bias))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


@pytest.mark.parametrize("boundary", ["mask", "zeros"])
def test_neighbour_attention_in_every_block_of_the_vision_tower(boundary):
    """The student of build_model encodes a clip exactly as neighbour attention in every block (frames t-1, t, t+1
    as keys and values), with the configured boundary: checked against the written-out reference above."""
    torch.manual_seed(0)
    model = build_model(tiny_preset("b2n_k400", f"model.boundary={boundary}")).double().eval()
    visual = model.student.clip.visual
    clips = CLIPS.double()
    with torch.no_grad():
        got = model.student.encode_video(clips)
        x = visual._embeds(clips.flatten(0, 1))                                # open_clip's patch + position embed
        for block in visual.transformer.resblocks:
            x = reference_block(block, x, clips.shape[1], boundary)
        want = F.normalize(visual._pool(x)[0] @ visual.proj, dim=-1).view_as(got)
        plain = F.normalize(visual(clips.flatten(0, 1)), dim=-1).view_as(got)
    assert len(visual.transformer.resblocks) >= 2
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    assert (got[:, 1] - plain[:, 1]).norm() > 1e-3                            # not per-image CLIP


def test_the_teacher_is_the_loaded_clip_frozen_with_no_temporal_attention():
    """build_model's teacher sees each frame as an image: permuting the frames permutes its features, and its
    features are plain CLIP's; the loss's visual distillation targets are those features."""
    torch.manual_seed(0)
    model = build_model(tiny_preset("b2n_k400"))
    perm = [2, 0, 1]
    with torch.no_grad():
        teacher = model.teacher_video(CLIPS)
        torch.testing.assert_close(model.teacher_video(CLIPS[:, perm]), teacher[:, perm], rtol=1e-5, atol=1e-6)
        plain = F.normalize(model.teacher.encode_image(CLIPS.flatten(0, 1)), dim=-1).view_as(teacher)
        torch.testing.assert_close(teacher, plain, rtol=1e-5, atol=1e-6)
        student = model.student.encode_video(CLIPS)                            # the student does see neighbours
        assert (model.student.encode_video(CLIPS[:, perm]) - student[:, perm]).norm() > 1e-3
        model.set_classes(ENTRIES)
        out = model(CLIPS, torch.tensor([0, 1]), template=0)                   # zero-init projectors: z' = z
        want = (1 - (student * plain).sum(-1)).mean()
    # 1 - cos near 0.01: float32's cos carries ~1e-7 of absolute error (more or less by the CPU's kernels), so the
    # comparison is absolute: a ten-thousandth of the term
    assert out.distill_visual.item() == pytest.approx(want.item(), abs=1e-6)
    assert not any(p.requires_grad for p in model.teacher.parameters()) and not model.teacher.training
    assert not any(n.startswith("teacher.") for n, _ in model.named_trainable_parameters())


def test_evaluation_precision_is_fp32_by_default():
    cfg = load_config(None)
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with eval_precision(cfg, torch.device("cpu")):
        assert (a @ b).dtype == torch.float32
    with eval_precision(load_config(None, ["eval.precision=bf16"]), torch.device("cpu")):
        assert (a @ b).dtype == torch.bfloat16


@pytest.fixture
def fresh_accelerator_state():
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=True)       # accelerate's state is process-wide: another test
    yield                                                         # in this worker may have made one
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("overrides, dtype", [((), torch.bfloat16), (("model.fidelity=official",), None)])
def test_training_precision_reaches_the_accelerator_and_the_forward(overrides, dtype, fresh_accelerator_state,
                                                                    tmp_path, monkeypatch):
    """The preset's train.mixed_precision is the accelerator's, and the prepared model's forward (train.py's
    training step) runs its matrix products in that dtype: bf16 by default; under the switch fp16 on a GPU and
    fp32 on a CPU (official_precision)."""
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    cfg = tiny_preset("b2n_k400", f"output_dir={tmp_path}", *overrides)
    accelerator = make_accelerator(cfg)
    want = dtype or {"fp16": torch.float16, "no": torch.float32}[official_precision(accelerator.device.type == "cuda")]
    assert accelerator.mixed_precision == cfg.train.mixed_precision == {
        torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "no"}[want]
    model = build_model(cfg)
    model.set_classes(ENTRIES)
    model = accelerator.prepare(model)
    seen = []
    fc = accelerator.unwrap_model(model).student.clip.visual.transformer.resblocks[0].mlp.c_fc
    fc.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    model(CLIPS.to(accelerator.device), torch.tensor([0, 1], device=accelerator.device), template=0)
    assert seen and set(seen) == {want}
    if want == torch.float16:
        assert accelerator.scaler is not None                                  # fp16: a GradScaler


def test_official_switch_sets_every_official_behaviour():
    default = load_config(CONFIGS / "b2n_k400.yaml")
    cfg = load_config(CONFIGS / "b2n_k400.yaml", ["model.fidelity=official", "train.global_batch=64"])
    assert (default.model.boundary, cfg.model.boundary) == (None, "zeros")     # None: the weights decide
    plain = build_model(tiny_preset("b2n_k400")).student                      # CLIP weights: neighbour, mask
    assert (plain.temporal, plain.boundary) == ("neighbour", "mask")
    assert (default.data.force_flip, cfg.data.force_flip) == (False, True)
    assert (default.train.decay_scalars, cfg.train.decay_scalars) == (False, True)
    assert (default.model.prompts, cfg.model.prompts) == ("frostline", "official")
    assert (default.eval.zero_shot_templates, cfg.eval.zero_shot_templates) == (29, 28)
    assert cfg.eval.precision == "fp32" and cfg.train.mixed_precision == official_precision()
    assert official_precision(cuda=True) == "fp16" and official_precision(cuda=False) == "no"
    assert scaled_lr(cfg.train) == pytest.approx((3.33e-6, 3.33e-8))           # never scaled, even at batch 64
    lr = load_config(CONFIGS / "b2n_k400.yaml", ["train.global_batch=64"])
    assert scaled_lr(lr.train) == pytest.approx((6.66e-6, 6.66e-8))
    assert any("scaled by 2" in n for n in startup_notes(lr))                  # and the run says so
    assert resolve(copy.deepcopy(cfg)) == []                                   # resolving twice changes nothing
    loader = loader_config(cfg, train=True, batch_size=4, device="cpu")
    assert loader.force_flip and not loader_config(default, train=True, batch_size=4, device="cpu").force_flip


@pytest.mark.parametrize("overrides, decays", [((), False), (("model.fidelity=official",), True)])
def test_logit_scale_decays_only_under_the_switch(overrides, decays):
    """In the optimiser train.py builds: logit_scale (0-D) decays only under the switch; 1-D parameters never."""
    cfg = tiny_preset("b2n_k400", *overrides)
    model = build_model(cfg)
    decay, no_decay = adamw(param_groups(model, cfg.train.weight_decay, cfg.train.decay_scalars),
                            cfg.train).param_groups
    scale = model.student.clip.logit_scale
    assert scale.ndim == 0 and decay["weight_decay"] == 0.01
    assert any(p is scale for p in (decay if decays else no_decay)["params"])
    one_d = [p for _, p in model.named_trainable_parameters() if p.ndim == 1]
    assert one_d and not any(p is q for p in one_d for q in decay["params"])  # 1-D: never (ZERO_WD_1D_PARAM)


def test_boundary_zeros_changes_only_what_it_should(tiny):
    clips = torch.randn(1, 3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    zeros = copy.deepcopy(tiny.student)
    zeros.boundary = "zeros"
    with torch.no_grad():
        a, b = tiny.student.encode_video(clips), zeros.encode_video(clips)
        one = tiny.student.encode_video(clips[:, :1]), zeros.encode_video(clips[:, :1])
        plain = F.normalize(tiny.student.clip.encode_image(clips[:, 0]), dim=-1)
    assert (a[0, 0] - b[0, 0]).norm() > 1e-4                                  # the first frame sees zero tokens
    torch.testing.assert_close(one[0][:, 0], plain, rtol=1e-5, atol=1e-5)     # mask: 1 frame = plain CLIP
    assert (one[1][:, 0] - plain).norm() > 1e-4                               # zeros: not


def test_official_prompts_and_zero_shot_baseline(tiny):
    official = Froster.build("frostline-tiny", None, prompt_style="official", zero_shot_templates=28)
    official.load_state_dict(tiny.state_dict())
    official.teacher.load_state_dict(tiny.teacher.state_dict())
    official.set_classes(ENTRIES)
    tok = official.tokenizer
    expect = tok(["a photo of Typing. Typing"])[0, :official.tokens.shape[-1]]
    assert torch.equal(official.tokens[0, 2].cpu(), expect)
    with torch.no_grad():
        names = [e.split(":")[0] for e in ENTRIES]
        each = torch.stack([encode_text(official.teacher, tok([t.format(n) for n in names]))
                            for t in OFFICIAL_TEMPLATES])
        baseline = F.normalize(each.mean(0), dim=-1)
        torch.testing.assert_close(official.class_features(zero_shot=True), baseline, rtol=1e-5, atol=1e-6)
        mine = copy.deepcopy(tiny)
        mine.set_classes(ENTRIES)
        assert (mine.class_features(zero_shot=True) - baseline).norm() > 1e-3     # the default: 29 composed


# FROSTER's rephrased Kinetics-400 file (label_rephrase/k400_rephrased_classes.json) names 8 classes otherwise than
# the official name-only file (label_db/k400-index2cls.json); official spelling -> rephrased spelling.
K400_REPHRASED_SPELLING = {
    "barbequing": "Barbecuing", "driving car": "Driving a car", "driving tractor": "Driving a tractor",
    "eating burger": "Eating a burger", "giving or receiving award": "Giving or receiving an award",
    "skiing (not slalom or crosscountry)": "Skiing (not slalom or cross-country)",
    "skiing crosscountry": "Skiing cross-country", "swimming breast stroke": "Swimming breaststroke"}


def test_official_zero_shot_names_are_the_official_k400_spelling(tmp_path):
    """K400 classes described by a file in FROSTER's rephrased format: the official switch's name-only zero-shot
    baseline spells all 400 as the official name-only file (written here in label_db/k400-index2cls.json's format)
    does, not as the descriptions' Names."""
    from test_splits import kinetics_rows, make_store

    names = list(k400_names())
    assert len(names) == 400 and set(K400_REPHRASED_SPELLING) <= set(names)
    official = tmp_path / "k400-index2cls.json"
    official.write_text(json.dumps({str(i): n for i, n in enumerate(names)}))
    rephrased = {str(i): f"{K400_REPHRASED_SPELLING.get(n, n[:1].upper() + n[1:])}: a clip of {n}"
                 for i, n in enumerate(names)}
    k400 = splits.Manifest.load(make_store(tmp_path / "k400", "k400", names,
                                           kinetics_rows(names, train=1, val=1, test=0)))
    plan = splits.cross_train(k400, class_names=json.dumps(rephrased), class_names_path="k400_rephrased.json")
    classes = [(c.label, c.class_name, c.prompt) for c in plan.files[0].classes]
    texts = prompts.class_texts(classes)
    assert all(":" in t for t in texts)                                        # every class has its description
    want = [n for _, n in sorted((int(k), v) for k, v in json.loads(official.read_text()).items())]
    got = prompts.name_only(classes, "k400")
    assert got == want
    copies = [(i, K400_REPHRASED_SPELLING.get(n, n.replace(" ", "_")), rephrased[str(i)])
              for i, n in enumerate(names)]
    assert prompts.name_only(copies, "k400") == want           # folder names, FROSTER's spellings: the official
    assert prompts.name_only([(0, "barbequing", "Barbecuing")], "k400") == ["Barbecuing"]   # a user's own name
    described = [prompts.split_text(t)[0] for t in texts]                      # what the baseline used to take
    assert sum(a.lower() != b.lower() for a, b in zip(described, want)) == 8
    model = Froster.build("frostline-tiny", None, prompt_style="official", zero_shot_templates=28)
    some = [0, 1] + [i for i, n in enumerate(names) if n in K400_REPHRASED_SPELLING]
    model.set_classes([texts[i] for i in some], names=[got[i] for i in some])
    table = [[t.format(want[i]) for i in some] for t in OFFICIAL_TEMPLATES]
    assert prompts.zero_shot_table(model.class_names) == table
    with torch.no_grad():                                                     # the baseline's class features
        each = torch.stack([encode_text(model.teacher, model.tokenizer(row)) for row in table])
        torch.testing.assert_close(model.class_features(zero_shot=True), F.normalize(each.mean(0), dim=-1),
                                   rtol=1e-5, atol=1e-6)


def test_evaluation_gives_the_zero_shot_baseline_the_name_only_spelling(tmp_path, fresh_accelerator_state):
    """evaluate's split loop hands the model the classes' name-only spelling beside their described texts."""
    from accelerate import Accelerator
    from model.evaluate import evaluate_split
    from train_data import make_dataset, write_tiny_config

    make_dataset(tmp_path / "d", num_classes=2, groups=4, clips=1, frames=12, workers=1, described=True)
    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "d" / "splits", tmp_path / "run",
                                        eval_batch=4, train={}), ["model.fidelity=official"])
    model = Froster.build("frostline-tiny", None, prompt_style="official", zero_shot_templates=28).eval()
    url = str(tmp_path / "d" / "splits" / "base2novel" / "ucf101" / "eval_base.parquet")
    result = evaluate_split(model, url, cfg, Accelerator(cpu=True), zero_shot=True, dataset="ucf101")
    assert result["num_samples"] > 0 and all(":" in t for t in model.class_texts)
    names = [t.split(":")[0] for t in model.class_texts]                      # "red circle moving left"
    assert model.class_names == [n.title() for n in names]                   # the class's readable name
