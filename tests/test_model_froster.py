"""model.froster and model.prompts: the FROSTER loss, projectors, frozen teacher, templates and the exact savings."""
from __future__ import annotations

import copy
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from model import prompts
from model.clip import encode_text, export_clip
from model.froster import Froster, ResidualProjector, distill_loss

CLASSES = ["jumping jacks", "playing guitar", "swimming breaststroke", "tai chi"]


def _clips(b=2, t=3, seed=0):
    return torch.randn(b, t, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    model = Froster.build("frostline-tiny", None)
    model.set_classes(CLASSES)
    return model


@pytest.fixture
def model(base):
    return copy.deepcopy(base)


# -- templates -------------------------------------------------------------------------------------------------------
def test_templates():
    assert len(prompts.TEMPLATES) == 28 and len(set(prompts.TEMPLATES)) == 28
    assert prompts.ALL_TEMPLATES[prompts.BARE_INDEX] == "{}" and len(prompts.ALL_TEMPLATES) == 29
    assert all(t.count("{}") == 1 for t in prompts.ALL_TEMPLATES)
    assert "a video of a person doing {}." in prompts.TEMPLATES
    table = prompts.prompt_table(["tai chi", "surfing"])
    assert len(table) == 29 and table[-1] == ["tai chi", "surfing"]
    assert table[0][1] == prompts.TEMPLATES[0].format("surfing")
    g = torch.Generator().manual_seed(0)
    assert {prompts.sample_template(g) for _ in range(500)} == set(range(28))


def test_class_text_prefers_descriptions():
    assert prompts.class_text("apply_eye_makeup") == "apply eye makeup"
    rope = "a person descends a cliff on a rope"
    assert prompts.class_text("abseiling", rope) == rope
    assert prompts.class_text("abseiling", "  ") == "abseiling"
    rows = [(1, "b_b", ""), (0, "a", "the letter a")]
    assert prompts.class_texts(rows) == ["the letter a", "b b"]
    assert prompts.class_texts(rows, use_descriptions=False) == ["a", "b b"]
    with pytest.raises(ValueError, match="without gaps"):
        prompts.class_texts([(0, "a", ""), (2, "c", "")])
    with pytest.raises(ValueError, match="empty"):
        prompts.class_text("  ")


def test_training_text_is_one_template_plus_bare_and_eval_is_29_ensemble(model):
    clip, tok = model.student.clip, model.tokenizer
    with torch.no_grad():
        j = 5
        got = model._student_class_text(j)
        a = encode_text(clip, tok([prompts.TEMPLATES[j].format(c) for c in CLASSES]))
        b = encode_text(clip, tok(CLASSES))
        torch.testing.assert_close(got, F.normalize(a + b, dim=-1), rtol=1e-5, atol=1e-6)
        model.eval()
        ens = model.class_features()
        each = torch.stack([encode_text(clip, tok([t.format(c) for c in CLASSES])) for t in prompts.ALL_TEMPLATES])
        torch.testing.assert_close(ens, F.normalize(each.mean(0), dim=-1), rtol=1e-5, atol=1e-6)


# -- loss ------------------------------------------------------------------------------------------------------------
def test_distill_loss_by_hand():
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 3.0], [1.0, 1.0], [0.0, 1.0]])
    assert distill_loss(s, t).item() == pytest.approx((1 + (1 - 1 / math.sqrt(2)) + 0) / 3, abs=1e-7)


def test_forward_loss_equals_hand_computation(model):
    """Recompute the loss from the model's parts, in float64, with nonzero projectors."""
    torch.manual_seed(1)
    for proj in (model.proj_v, model.proj_t):
        torch.nn.init.normal_(proj.fc2.weight, std=0.5)
    clips, labels, j = _clips(), torch.tensor([2, 0]), 7
    out = model(clips, labels, template=j)

    with torch.no_grad():
        m = copy.deepcopy(model).double()
        clip, teacher, tok = m.student.clip, m.teacher, m.tokenizer
        texts = lambda enc, tmpl: encode_text(enc, tok([tmpl.format(c) for c in CLASSES]))  # noqa: E731
        zt = F.normalize(texts(clip, prompts.TEMPLATES[j]) + texts(clip, "{}"), dim=-1)
        tt = F.normalize(texts(teacher, prompts.TEMPLATES[j]) + texts(teacher, "{}"), dim=-1)
        zv = m.student.encode_video(clips.double())                                # [B, T, D]
        tv = F.normalize(teacher.encode_image(clips.double().flatten(0, 1)), dim=-1).view_as(zv)
        scale = clip.logit_scale.exp()
        logits = torch.stack([torch.stack([scale * sum(zv[b, t] @ zt[c] for t in range(3)) / 3
                                           for c in range(len(CLASSES))]) for b in range(2)])
        ce = -sum(torch.log_softmax(logits[b], 0)[labels[b]] for b in range(2)) / 2

        def proj(p, z):
            return z + 0.1 * (F.gelu(z @ p.fc1.weight.T) @ p.fc2.weight.T)

        cos = lambda a, b: (a @ b) / (a.norm() * b.norm())  # noqa: E731
        dv = sum(1 - cos(proj(m.proj_v, zv[b, t]), tv[b, t]) for b in range(2) for t in range(3)) / 6
        dt = sum(1 - cos(proj(m.proj_t, zt[c]), tt[c]) for c in range(len(CLASSES))) / len(CLASSES)
        loss = ce + 2.0 * (dv + dt)
    torch.testing.assert_close(out.logits.double(), logits, rtol=1e-5, atol=1e-5)
    for got, want in [(out.ce, ce), (out.distill_visual, dv), (out.distill_text, dt), (out.loss, loss)]:
        assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    assert out.distill_visual > 1e-3 and out.distill_text > 1e-3  # the projectors really acted


def test_projectors_start_as_identity(model):
    p = ResidualProjector(64)
    z = torch.randn(5, 64)
    assert torch.equal(p(z), z)
    assert (p.fc2.weight == 0).all() and p.fc1.weight.std() > 0.1
    # with a temporal-free student, student == teacher at step 0: both distillation terms vanish
    model.student.temporal = "none"
    out = model(_clips(), torch.tensor([0, 1]), template=0)
    assert out.distill_visual.abs() < 1e-6 and out.distill_text.abs() < 1e-6
    assert torch.equal(model.proj_v(torch.ones(2, 64)), torch.ones(2, 64))


def test_teacher_gets_no_gradients_and_stays_bit_identical(model):
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    student_before = model.student.clip.visual.conv1.weight.clone()
    params = model.trainable_parameters()
    assert not any(p is q for p in params for q in model.teacher.parameters())
    assert not any(n.startswith("teacher.") for n, _ in model.named_trainable_parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    model.train()
    assert not model.teacher.training
    for step in range(3):
        opt.zero_grad()
        model(_clips(seed=step), torch.tensor([step % 4, 3])).loss.backward()
        assert all(p.grad is None for p in model.teacher.parameters())
        assert all(not p.requires_grad for p in model.teacher.parameters())
        opt.step()
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(model.student.clip.visual.conv1.weight, student_before)
    assert (model.proj_v.fc2.weight != 0).any()


# -- exact savings ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_savings_are_exact_across_optimiser_steps(base):
    """Cached teacher text + cut context vs the reference (re-encode the teacher every step, 77 tokens, math
    attention): equal losses over several AdamW steps. In float64, so that AdamW cannot amplify fp32 rounding
    into a visible drift: what remains is the exactness of the changes themselves."""
    ours = copy.deepcopy(base).double()
    ref = copy.deepcopy(base).double()
    ref.cache_teacher_text = ref.truncate_text = False
    ref.student.attn_impl = "math"
    for m in (ours, ref):
        m.set_classes(CLASSES)  # the teacher's cache in float64 too
    assert ours.tokens.shape[-1] < ref.tokens.shape[-1] == 77
    opts = [torch.optim.AdamW(m.trainable_parameters(), lr=1e-3) for m in (ours, ref)]
    for step in range(3):
        losses = []
        for m, opt in zip((ours, ref), opts):
            opt.zero_grad()
            out = m(_clips(seed=step).double(), torch.tensor([1, 3]), template=step * 5)
            out.loss.backward()
            opt.step()
            losses.append(out)
        for name in ("loss", "ce", "distill_visual", "distill_text"):
            a, b = getattr(losses[0], name).item(), getattr(losses[1], name).item()
            assert a == pytest.approx(b, rel=1e-10, abs=1e-12), (step, name)


def test_teacher_text_cache_matches_fresh_encoding(model):
    with torch.no_grad():
        fresh = encode_text(model.teacher, model.tokenizer([prompts.TEMPLATES[3].format(c) for c in CLASSES]))
    torch.testing.assert_close(model.teacher_text[3], fresh, rtol=1e-5, atol=1e-6)


# -- evaluation and export -------------------------------------------------------------------------------------------
def test_predict_caches_per_class_set_and_refreshes_after_training(model):
    model.eval()
    clips = _clips()
    first = model.predict(clips)
    assert first.shape == (2, len(CLASSES))
    assert model.class_features() is model.class_features()  # cached in eval mode
    model.train()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=1.0)
    model(clips, torch.tensor([0, 1])).loss.backward()
    opt.step()
    model.eval()
    assert not torch.allclose(model.predict(clips), first)
    model.set_classes(CLASSES[:2])
    assert model.predict(clips).shape == (2, 2)


def test_zero_shot_is_the_frozen_clip(model):
    model.eval()
    clips = _clips()
    with torch.no_grad():
        clip = model.teacher
        frames = F.normalize(clip.encode_image(clips.flatten(0, 1)), dim=-1).view(2, 3, -1).mean(1)
        text = F.normalize(model.teacher_text.mean(0), dim=-1)
        expect = clip.logit_scale.exp() * frames @ text.T
    torch.testing.assert_close(model.predict(clips, zero_shot=True), expect, rtol=1e-5, atol=1e-5)


def test_export_is_the_student_clip_alone(model, tmp_path):
    sd = model.student_state_dict()
    assert not any(k.startswith(("teacher", "proj_", "student")) for k in sd)
    path = tmp_path / "export.pt"
    export_clip(sd, path, "frostline-tiny")
    eval_only = Froster.build("frostline-tiny", None, checkpoint=path, teacher=False)
    eval_only.set_classes(CLASSES)
    model.eval()
    eval_only.eval()
    torch.testing.assert_close(eval_only.predict(_clips()), model.predict(_clips()))
    with pytest.raises(RuntimeError, match="teacher=False"):
        eval_only(_clips(), torch.tensor([0, 1]))


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="labels"):
        model(_clips(), torch.tensor([0, 9]))
    fresh = Froster.build("frostline-tiny", None)
    with pytest.raises(RuntimeError, match="set_classes"):
        fresh(_clips(), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least one"):
        fresh.set_classes([])


# -- class text sharded across ranks ---------------------------------------------------------------------------------
def _perturb(model: Froster) -> None:
    """Move the student away from the teacher and the projectors away from the identity: at step 0 both
    distillation terms are exactly 0 in exact arithmetic, and so are some gradients (proj_t.fc2), which leaves a
    comparison nothing but floating-point noise to compare (which differs from one CPU to another)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_trainable_parameters():
            if name.startswith(("proj_v.fc2", "proj_t.fc2")):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif p.is_floating_point() and p.numel() > 1:
                p.add_(0.05 * p.std() * torch.randn(p.shape, generator=g))


def _sharded_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        sharded = Froster.build("frostline-tiny", None, shard_text=True)
        _perturb(sharded)
        whole = copy.deepcopy(sharded)
        whole.shard_text = False
        texts = CLASSES + ["surfing"]  # 5 classes over 2 ranks: uneven shards
        for m in (sharded, whole):
            m.set_classes(texts)
        clips, labels = _clips(), torch.tensor([4, 1])
        out = sharded(clips, labels, template=11)
        out.loss.backward()
        for p in sharded.trainable_parameters():  # what DDP does: average the gradients over ranks
            dist.all_reduce(p.grad)
            p.grad /= world
        ref = whole(clips, labels, template=11)
        ref.loss.backward()
        # errors measured against the whole gradient's norm: a parameter whose gradient is small compared with
        # the rest is compared at the scale that matters, not at its own (possibly fp-noise) scale
        pairs = [(a.grad, b.grad) for a, b in zip(sharded.trainable_parameters(), whole.trainable_parameters())]
        total = torch.sqrt(sum(b.square().sum() for _, b in pairs)).item()
        worst = max((a - b).norm().item() for a, b in pairs) / total
        smallest = min(b.norm().item() for _, b in pairs if b.numel() > 1) / total
        torch.manual_seed(100 + rank)  # ranks' RNGs disagree; the template must not
        template = sharded._pick_template()
        torch.save({"loss": (out.loss.item(), ref.loss.item()), "worst": worst, "smallest": smallest,
                    "template": template},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_class_text_sharded_across_ranks_keeps_loss_and_gradients(tmp_path):
    """Each of 2 gloo ranks encodes half the classes; the all-gather keeps the gradients: after DDP-style
    averaging they equal the unsharded model's, and so does the loss."""
    import socket

    import torch.multiprocessing as tmp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp.spawn(_sharded_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for r in results:
        sharded_loss, whole_loss = r["loss"]
        assert sharded_loss == pytest.approx(whole_loss, rel=1e-6)
        assert r["worst"] < 1e-5
        assert r["smallest"] > 1e-6  # no gradient is trivially zero: the comparison measures the sharding
    assert results[0]["template"] == results[1]["template"]  # ranks agree on the step's template
