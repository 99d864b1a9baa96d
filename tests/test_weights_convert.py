"""tools/convert_weights.py: every format in, an open_clip checkpoint out that plain open_clip loads."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import open_clip
import pytest
from tool_module import load_tool
import torch

import weights_files
from model.clip import build_clip, export_clip


convert = load_tool("convert_weights")


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(3)
    model, _ = build_clip("frostline-tiny", pretrained=None, quick_gelu=True)
    with torch.no_grad():
        model.logit_scale.fill_(3.1)
    return model.eval()


@pytest.mark.parametrize("fmt", ["openai", "froster"])
def test_converted_file_loads_in_plain_open_clip(source, tmp_path, capsys, fmt):
    src = tmp_path / ("ViT-tiny.pt" if fmt == "openai" else "swa_2_22.pth")
    if fmt == "openai":
        weights_files.write_openai_torchscript(source, src)
    else:
        teacher, _ = build_clip("frostline-tiny", pretrained=None)
        weights_files.write_pyslowfast(source, teacher, src, projectors=True)
    out = tmp_path / "converted.pt"
    assert convert.main([str(src), str(out)]) == 0
    printed = capsys.readouterr().out
    found = json.loads(printed[:printed.rindex("}") + 1])
    assert found["format"] == fmt and found["architecture"] == "frostline-tiny" and found["quick_gelu"] is True
    if fmt == "froster":
        assert found["boundary"] == "zeros" and len(found["projectors"]) == 4
        assert any("raw_model" in k for k in found["left_out"])
    saved = torch.load(out, weights_only=True)
    assert set(saved) >= {"state_dict", "model_name"}
    # plain open_clip: no frostline code involved in building or loading
    plain = open_clip.create_model(saved["model_name"], pretrained=str(out), force_quick_gelu=True).eval()
    x = torch.randn(2, 3, 64, 64)
    tokens = open_clip.get_tokenizer("frostline-tiny")(["riding a bike", "juggling"])
    with torch.no_grad():
        assert torch.equal(plain.encode_image(x), source.encode_image(x))
        assert torch.equal(plain.encode_text(tokens), source.encode_text(tokens))


def test_quickgelu_models_are_named_for_open_clip(tmp_path):
    """A QuickGELU ViT-B-16 is exported as 'ViT-B-16-quickgelu', the name under which open_clip builds it right."""
    path = tmp_path / "named.pt"
    export_clip({"logit_scale": torch.tensor(4.6)}, path, "ViT-B-16", quick_gelu=True)
    assert torch.load(path, weights_only=True)["model_name"] == "ViT-B-16-quickgelu"
    export_clip({"logit_scale": torch.tensor(4.6)}, path, "ViT-B-16", quick_gelu=False)
    assert torch.load(path, weights_only=True)["model_name"] == "ViT-B-16"


def test_unreadable_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "notes.pth"
    bad.write_bytes(b"not a checkpoint")
    assert convert.main([str(bad), str(tmp_path / "out.pt")]) == 2
    assert "notes.pth" in capsys.readouterr().err
