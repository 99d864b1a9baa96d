"""Every weights format loads exactly: image, text and video features equal the source model's (fp32).

The files are written the way their programs write them (tests/weights_files.py) from a tiny CLIP with known,
non-default weights; a second, different CLIP plays FROSTER's frozen teacher, so keeping the wrong half would show.
"""
from __future__ import annotations

import os
import pickle
import subprocess

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import open_clip
import pytest
import torch

from model.clip import build_clip, export_clip, load_clip
from model.froster import Froster, VideoCLIP
from model.weights import WeightsError, match_architecture, read_weights
import weights_files

NAME = "frostline-tiny"


def _clip(seed: int):
    torch.manual_seed(seed)
    model, _ = build_clip(NAME, pretrained=None, quick_gelu=True)
    with torch.no_grad():
        model.logit_scale.fill_(2.5 + seed)
        for p in model.parameters():  # move every tensor off its init so a missed tensor cannot pass
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


@pytest.fixture(scope="module")
def source():
    return _clip(0)


@pytest.fixture(scope="module")
def teacher():
    return _clip(1)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(7)
    clips = torch.randn(2, 4, 3, 64, 64, generator=g)
    _, tokenizer = build_clip(NAME, pretrained=None)
    tokens = tokenizer(["juggling balls", "riding a bike", "a person doing the long jump"])
    return clips, tokens


def _close(a: torch.Tensor, b: torch.Tensor):
    assert a.shape == b.shape
    assert (a - b).abs().max() <= 1e-6 * b.abs().max(), (a - b).abs().max()


def assert_same_features(loaded, source, inputs, boundary="mask"):
    clips, tokens = inputs
    with torch.no_grad():
        images = clips.flatten(0, 1)
        _close(loaded.encode_image(images), source.encode_image(images))
        _close(loaded.encode_text(tokens), source.encode_text(tokens))
        _close(VideoCLIP(loaded, "neighbour", boundary).encode_video(clips),
               VideoCLIP(source, "neighbour", boundary).encode_video(clips))
    for (k, a), (k2, b) in zip(sorted(loaded.state_dict().items()), sorted(source.state_dict().items())):
        assert k == k2 and torch.equal(a, b), k


def test_openai_torchscript_archive(source, inputs, tmp_path):
    path = tmp_path / "ViT-tiny.pt"
    weights_files.write_openai_torchscript(source, path)
    # the symptom the issue reports: torch.load refuses the archive with weights_only=True
    with pytest.raises(Exception, match="TorchScript"):
        torch.load(path, weights_only=True)
    with pytest.raises(WeightsError, match="TorchScript archive.*name its path"):
        read_weights(path)  # not named by the user: not opened
    w = read_weights(path, allow_torchscript=True)
    assert w.kind == "openai" and w.quick_gelu is True
    assert not {"input_resolution", "context_length", "vocab_size"} & set(w.state_dict)
    model, _, info = load_clip(NAME, path)
    assert info.quick_gelu and info.kind == "openai"
    assert isinstance(model.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    assert_same_features(model, source, inputs)


@pytest.mark.parametrize("epoch_file", [True, False], ids=["epoch_checkpoint", "swa_average"])
def test_froster_pyslowfast_checkpoint(source, teacher, inputs, tmp_path, epoch_file):
    path = tmp_path / ("checkpoint_epoch_00005.pyth" if epoch_file else "swa_2_22.pth")
    weights_files.write_pyslowfast(source, teacher, path, projectors=True, epoch_file=epoch_file)
    w = read_weights(path)
    assert w.kind == "froster" and w.quick_gelu and w.boundary == "zeros"
    assert set(w.projectors) == {"projector_v.0.weight", "projector_v.2.weight", "projector_t.0.weight",
                                 "projector_t.2.weight"}
    assert any("raw_model" in k for k in w.left_out) == epoch_file
    model = Froster.build(NAME, path, teacher=False)
    said = model.clip_info.describe()  # what the entry points log at start-up
    assert "froster weights" in said and "projectors found" in said and "boundary zeros" in said
    assert model.student.boundary == "zeros"  # FROSTER was trained with zero-padded neighbours
    assert Froster.build(NAME, path, teacher=False, boundary="mask").student.boundary == "mask"  # user override
    assert_same_features(model.student.clip, source, inputs, boundary="zeros")


def test_open_vclip_checkpoint(source, teacher, inputs, tmp_path):
    path = tmp_path / "openvclip_b16.pth"
    weights_files.write_pyslowfast(source, teacher, path, projectors=False)
    w = read_weights(path)
    assert w.kind == "open-vclip" and not w.projectors and w.boundary == "zeros"
    model, _, info = load_clip(NAME, path)
    assert info.boundary == "zeros" and info.quick_gelu
    assert_same_features(model, source, inputs, boundary="zeros")


def test_vifi_clip_checkpoint_takes_the_token_table_from_its_base(source, inputs, tmp_path):
    path, base = tmp_path / "vifi_clip_k400.pth", tmp_path / "ViT-tiny.pt"
    weights_files.write_vifi_clip(source, path)
    weights_files.write_openai_torchscript(source, base)
    with pytest.raises(Exception, match="yacs.config.CfgNode"):
        torch.load(path, weights_only=True)  # what a plain weights-only load says
    w = read_weights(path)
    assert w.kind == "vifi-clip" and w.missing == ["token_embedding.weight"] and w.temporal == "none"
    assert any("prompt_learner" in k for k in w.left_out)
    model, _, info = load_clip(NAME, path, base=base)
    assert info.temporal == "none" and info.quick_gelu
    assert_same_features(model, source, inputs)
    assert Froster.build(NAME, path, teacher=False, base=base).student.temporal == "none"  # frames averaged


@pytest.mark.parametrize("layout", ["plain", "module_prefix", "open_clip", "open_clip_module", "safetensors"])
def test_state_dict_layouts(source, inputs, tmp_path, layout):
    sd = {k: v.clone() for k, v in source.state_dict().items()}
    if layout == "safetensors":
        from safetensors.torch import save_file
        path = tmp_path / "clip.safetensors"
        save_file(sd, str(path))
    else:
        if "module" in layout:
            sd = {f"module.{k}": v for k, v in sd.items()}
        path = tmp_path / "clip.pt"
        torch.save({"state_dict": sd, "epoch": 3} if layout.startswith("open_clip") else sd, path)
    w = read_weights(path)
    assert w.kind == {"plain": "state-dict", "module_prefix": "state-dict", "safetensors": "safetensors"}.get(
        layout, "open_clip")
    model, _, _ = load_clip(NAME, path, quick_gelu=True)
    assert_same_features(model, source, inputs)


def test_export_loads_in_plain_open_clip(source, inputs, tmp_path):
    path = tmp_path / "student.pt"
    export_clip(source.state_dict(), path, NAME, quick_gelu=True, boundary="zeros")
    plain = open_clip.create_model(torch.load(path, weights_only=True)["model_name"], pretrained=str(path),
                                   force_quick_gelu=True).eval()
    assert_same_features(plain, source, inputs)
    model, _, info = load_clip(None, path)  # no name given: the architecture comes from the file
    assert info.name == NAME and info.quick_gelu and info.boundary == "zeros"
    assert_same_features(model, source, inputs)


def test_architecture_follows_the_tensors(source):
    assert match_architecture(source.state_dict(), NAME) == NAME
    assert match_architecture(source.state_dict(), "ViT-B-16") == NAME  # the configured name does not fit
    small, _ = build_clip("frostline-small", pretrained=None)
    assert match_architecture(small.state_dict()) == "frostline-small"
    with pytest.raises(WeightsError, match="no open_clip CLIP config fits"):
        match_architecture({"visual.conv1.weight": torch.zeros(5, 3, 7, 7)})


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return subprocess.check_call, (["touch", str(self.path)],)


def test_pickles_never_run_code(tmp_path):
    """A checkpoint whose pickle calls a function is read with stand-ins: nothing runs, the file is refused."""
    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"state_dict": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="evil.pt"):
        read_weights(path)
    assert not marker.exists()
    with open(tmp_path / "evil.pkl", "wb") as f:  # the legacy (non-zip) pickle format is refused too
        pickle.dump({"state_dict": _Payload(marker)}, f)
    with pytest.raises(WeightsError, match="evil.pkl"):
        read_weights(tmp_path / "evil.pkl")
    assert not marker.exists()
