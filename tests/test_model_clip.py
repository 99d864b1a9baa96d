"""model.clip: building CLIPs by name/tag/checkpoint, and exact text encoding at a cut context."""
from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import open_clip
import pytest
import torch

from model.architectures import register_configs
from model.clip import build_clip, encode_text, export_clip, text_length
from model.prompts import prompt_table

TEXTS = ["jumping jacks", "playing the acoustic guitar in a crowded park at night", "swimming", "a"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_clip("frostline-tiny", pretrained=None)


def test_project_configs_are_registered():
    names = register_configs()
    assert {"frostline-tiny", "frostline-small"} <= set(names)
    assert {"frostline-tiny", "frostline-small"} <= set(open_clip.list_models())


def test_build_returns_fp32_clip_and_tokenizer(tiny):
    model, tokenizer = tiny
    assert isinstance(model, open_clip.CLIP)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert tokenizer(["a"]).shape == (1, 77)
    with pytest.raises(ValueError, match="unknown CLIP model"):
        build_clip("no-such-model", pretrained=None)


def test_openai_default_is_the_real_download_path(monkeypatch):
    """pretrained='openai' is tried for real; offline it fails with advice to pass a local checkpoint."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="pretrained=.openai.*pretrained=PATH"):
        build_clip("ViT-B-32")


def test_checkpoint_round_trip(tiny, tmp_path):
    model, _ = tiny
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    path = tmp_path / "clip.pt"
    export_clip(model.state_dict(), path, "frostline-tiny")
    loaded, _ = build_clip("frostline-tiny", checkpoint=path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    # open_clip's own loader reads the export too
    plain = open_clip.create_model("frostline-tiny")
    open_clip.load_checkpoint(plain, str(path))
    assert torch.equal(plain.logit_scale, model.logit_scale)


def test_bad_checkpoints_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_clip("frostline-tiny", checkpoint=tmp_path / "missing.pt")
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"visual.proj": torch.zeros(3, 3)}}, wrong)
    with pytest.raises(RuntimeError, match="wrong.pt"):
        build_clip("frostline-tiny", checkpoint=wrong)


def test_encode_text_matches_open_clip_at_full_context(tiny):
    model, tokenizer = tiny
    tokens = tokenizer(TEXTS)
    with torch.no_grad():
        assert torch.equal(encode_text(model, tokens), model.encode_text(tokens, normalize=True))


def test_text_truncation_is_exact(tiny):
    """Cutting every prompt to the longest real one changes no feature and no gradient (beyond fp rounding)."""
    model, tokenizer = tiny
    table = prompt_table(TEXTS)
    tokens = tokenizer([p for row in table for p in row])
    length = text_length(tokens, model)
    longest = max(int((t != 0).sum()) for t in tokens)  # <sot> ... <eot>, then zero padding
    assert length == longest < 77
    assert (tokens[:, length:] == 0).all()

    full = encode_text(model, tokens)
    cut = encode_text(model, tokens[:, :length])
    torch.testing.assert_close(cut, full, rtol=0, atol=1e-6)

    # gradients too, in float64 so that fp32 rounding (relative ~1e-7 of gradients in the hundreds) cannot hide a
    # real difference
    model64 = copy.deepcopy(model).double()
    weights = torch.linspace(-1, 1, 64, dtype=torch.float64)
    grads = []
    for toks in (tokens, tokens[:, :length]):
        model64.zero_grad()
        (encode_text(model64, toks) * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model64.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        full_grad, cut_grad = grads[0][name], grads[1][name]
        if name == "positional_embedding":  # positions past the cut get exactly zero gradient in the full run
            assert (full_grad[length:] == 0).all()
            full_grad, cut_grad = full_grad[:length], cut_grad[:length]
        torch.testing.assert_close(cut_grad, full_grad, rtol=1e-10, atol=1e-10, msg=name)


def test_too_long_context_is_refused(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="exceed"):
        encode_text(model, torch.zeros(1, 78, dtype=torch.long))
