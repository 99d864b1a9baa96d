"""model.distill_terms: the visual-only and text-only distillation ablations drop exactly one term of the loss."""
from __future__ import annotations

import copy

import pytest
import torch

from model.config import ConfigError, load_config
from model.froster import Froster
from model.loss import froster_loss

CLASSES = ["red square spinning", "blue circle moving left", "green triangle growing"]


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    model = Froster.build("frostline-tiny", None)
    model.set_classes(CLASSES)
    for proj in (model.proj_v, model.proj_t):     # nonzero projectors: both distillation terms are far from zero
        torch.nn.init.normal_(proj.fc2.weight, std=0.5)
    return model


def _step(model: Froster, terms: str):
    m = copy.deepcopy(model)
    m.distill_terms = terms
    clips = torch.randn(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    out = m(clips, torch.tensor([2, 0]), template=5)
    out.loss.backward()
    return m, out


def test_each_setting_sums_its_own_terms(base):
    m_both, both = _step(base, "both")
    want_grad = {"visual": m_both.proj_v.fc2.weight.grad, "text": m_both.proj_t.fc2.weight.grad}
    assert both.distill_visual > 1e-2 and both.distill_text > 1e-2   # both terms really present
    lam = base.distill_weight
    for terms, kept in (("both", both.distill_visual + both.distill_text), ("visual", both.distill_visual),
                        ("text", both.distill_text)):
        m, out = _step(base, terms)
        # the reported terms do not depend on the setting; only the total does
        for got, want in ((out.ce, both.ce), (out.distill_visual, both.distill_visual),
                          (out.distill_text, both.distill_text)):
            assert got.item() == pytest.approx(want.item(), rel=1e-6)
        assert out.loss.item() == pytest.approx((out.ce + lam * kept).item(), rel=1e-6)
        # the dropped term's projector gets no gradient at all; the kept one's gets the same gradient as with
        # both terms (each projector feeds only its own term)
        grads = {"visual": m.proj_v.fc2.weight.grad, "text": m.proj_t.fc2.weight.grad}
        for side, g in grads.items():
            if terms in ("both", side):
                torch.testing.assert_close(g, want_grad[side], rtol=1e-4, atol=1e-4 * want_grad[side].abs().max().item())
            else:
                assert g is None


def test_loss_function_terms_directly():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(4, 5, generator=g), torch.tensor([0, 1, 2, 3])
    zv, tv = torch.randn(4, 3, 16, generator=g), torch.randn(4, 3, 16, generator=g)
    zt, tt = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    both = froster_loss(logits, labels, zv, tv, zt, tt, 2.0)
    assert torch.equal(both.loss, froster_loss(logits, labels, zv, tv, zt, tt, 2.0, "both").loss)
    vis = froster_loss(logits, labels, zv, tv, zt, tt, 2.0, "visual")
    txt = froster_loss(logits, labels, zv, tv, zt, tt, 2.0, "text")
    assert vis.loss.item() == pytest.approx((both.ce + 2.0 * both.distill_visual).item(), rel=1e-6)
    assert txt.loss.item() == pytest.approx((both.ce + 2.0 * both.distill_text).item(), rel=1e-6)
    with pytest.raises(ValueError, match="distill_terms"):
        froster_loss(logits, labels, zv, tv, zt, tt, 2.0, "neither")


def test_config_knob_defaults_to_both_and_rejects_unknown_values():
    assert load_config(None).model.distill_terms == "both"
    assert load_config(None, ["model.distill_terms=visual"]).model.distill_terms == "visual"
    with pytest.raises(ConfigError, match="model.distill_terms"):
        load_config(None, ["model.distill_terms=neither"])
