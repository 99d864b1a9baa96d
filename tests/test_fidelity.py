"""Every method fact of FROSTER that frostline reproduces, pinned: templates, prompt composition, presets, the
projectors, neighbour attention in every block, evaluation precision, and what the official switch changes.

Each test names the fact; docs/fidelity.md lists them with the official value and its source file.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from model import prompts
from model.clip import build_clip, encode_text
from model.config import load_config
from model.data import loader_config
from model.evaluate import eval_precision
from model.fidelity import official_precision, resolve, startup_notes
from model.froster import Froster, ResidualProjector
from model.optim import param_groups, scaled_lr
from model.temporal import block_forward, video_features

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
    assert (m.alpha, m.distill_weight, m.temporal) == (0.1, 2.0, "neighbour")  # alpha and lambda
    assert cfg.eval.precision == "fp32"
    assert not startup_notes(cfg)                                              # nothing scaled, no switch


def test_alpha_and_lambda_reach_the_model(tiny):
    assert tiny.proj_v.alpha == tiny.proj_t.alpha == 0.1 and tiny.distill_weight == 2.0


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


def test_neighbour_attention_in_every_block_of_the_vision_tower():
    """The input of block i+1 is block i's neighbour-attention output, for every block, and that differs from
    the block's own per-image attention."""
    torch.manual_seed(0)
    clip, _ = build_clip("frostline-tiny", pretrained=None)
    clip.eval()
    blocks = clip.visual.transformer.resblocks
    seen: list[torch.Tensor] = []
    hooks = [b.ln_1.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
             for b in blocks]
    frames = 4
    images = torch.randn(2 * frames, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        video_features(clip.visual, images, frames)
        for h in hooks:
            h.remove()
        assert len(seen) == len(blocks) >= 2
        for i in range(len(blocks) - 1):
            expected = block_forward(blocks[i], seen[i], frames)
            torch.testing.assert_close(seen[i + 1], expected, rtol=1e-5, atol=1e-5)
            plain = blocks[i](seen[i])
            assert (seen[i + 1] - plain).norm() > 1e-3 * plain.norm()


def test_evaluation_precision_is_fp32_by_default():
    cfg = load_config(None)
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with eval_precision(cfg, torch.device("cpu")):
        assert (a @ b).dtype == torch.float32
    with eval_precision(load_config(None, ["eval.precision=bf16"]), torch.device("cpu")):
        assert (a @ b).dtype == torch.bfloat16


def test_official_switch_sets_every_official_behaviour():
    default = load_config(CONFIGS / "b2n_k400.yaml")
    cfg = load_config(CONFIGS / "b2n_k400.yaml", ["model.fidelity=official", "train.global_batch=64"])
    assert (default.model.boundary, cfg.model.boundary) == ("mask", "zeros")
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


def test_logit_scale_decays_only_under_the_switch(tiny):
    def decayed(flag):
        groups = param_groups(tiny, 0.01, flag)
        return {id(p) for p in groups[0]["params"]}
    scale = tiny.student.clip.logit_scale
    assert scale.ndim == 0
    assert id(scale) not in decayed(False) and id(scale) in decayed(True)
    one_d = [p for _, p in tiny.named_trainable_parameters() if p.ndim == 1]
    assert one_d and not any(id(p) in decayed(True) for p in one_d)          # 1-D: never (ZERO_WD_1D_PARAM)


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
