"""Released weights through the normal evaluation path: model.pretrained names the file, the weights decide
QuickGELU and the neighbour-frame boundary, the config overrides, model.checkpoint still works."""
from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import weights_files
from tool_module import load_tool
from model.build import build_eval_model, build_model, pretrained, quick_gelu
from model.clip import build_clip, uses_quick_gelu
from model.config import ConfigError, load_config
from model.evaluate import resolve_weights
from model.temporal import video_features

PRESETS = sorted((Path(__file__).resolve().parents[1] / "model" / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def froster_file(tmp_path_factory):
    torch.manual_seed(5)
    student, _ = build_clip("frostline-tiny", pretrained=None)
    teacher, _ = build_clip("frostline-tiny", pretrained=None)
    path = tmp_path_factory.mktemp("released") / "swa_2_22.pth"
    weights_files.write_pyslowfast(student, teacher, path, projectors=True, epoch_file=False)
    return path, student


def _cfg(tmp_path, *overrides):
    return load_config(None, ["model.clip=frostline-tiny", "data.crop_size=64", "data.short_side_range=[64,72]", f"output_dir={tmp_path / 'run'}",
                              *overrides])


def test_a_run_without_checkpoints_evaluates_the_released_file(froster_file, tmp_path):
    path, student = froster_file
    cfg = _cfg(tmp_path, f"model.pretrained={path}")
    assert cfg.model.boundary is None and quick_gelu(cfg) is None  # both left to the weights
    weights = resolve_weights(cfg)
    assert weights == path
    model = build_eval_model(cfg, weights)
    assert model.teacher is None and model.student.boundary == "zeros" and model.student.temporal == "neighbour"
    assert uses_quick_gelu(model.student.clip)
    for k, v in student.state_dict().items():
        assert torch.equal(model.student.clip.state_dict()[k], v), k
    assert build_eval_model(_cfg(tmp_path, f"model.pretrained={path}", "model.boundary=mask"),
                            weights).student.boundary == "mask"


def test_zero_shot_and_training_take_the_file_too(froster_file, tmp_path):
    path, student = froster_file
    cfg = _cfg(tmp_path, f"model.pretrained={path}")
    zs = build_eval_model(cfg, None)  # --zero-shot: the loaded CLIP as the frozen teacher
    assert torch.equal(zs.teacher.visual.proj, student.visual.proj)
    trainee = build_model(cfg)
    assert trainee.student.boundary == "zeros" and torch.equal(trainee.student.clip.visual.proj, student.visual.proj)


def test_checkpoint_is_a_deprecated_alias(froster_file, tmp_path, caplog):
    path, _ = froster_file
    cfg = _cfg(tmp_path, "model.pretrained=null", f"model.checkpoint={path}")
    with caplog.at_level(logging.WARNING):
        assert pretrained(cfg) == str(path)
    assert "deprecated" in caplog.text
    assert resolve_weights(cfg) == path


def test_missing_or_bad_names_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        resolve_weights(_cfg(tmp_path, f"model.pretrained={tmp_path / 'nothing.pth'}"))
    with pytest.raises(FileNotFoundError, match="no trained weights"):
        resolve_weights(_cfg(tmp_path))  # a tag is not a file to evaluate
    with pytest.raises(ConfigError, match="model.boundary"):
        _cfg(tmp_path, "model.boundary=edge")


def test_the_presets_leave_the_boundary_to_the_weights():
    """The released-weights command: a preset plus model.pretrained=<FROSTER file> pins no boundary."""
    cfg = load_config("model/configs/b2n_ucf101.yaml", ["model.pretrained=X.pth"])
    assert cfg.model.boundary is None
    assert load_config("model/configs/b2n_ucf101.yaml", ["model.pretrained=X.pth", "model.boundary=mask"]
                       ).model.boundary == "mask"                                 # the command line still wins


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_a_froster_checkpoint_is_evaluated_with_zero_padding_through_every_preset(preset, froster_file, tmp_path,
                                                                                  caplog):
    path, _ = froster_file
    cfg = load_config(preset, [f"model.pretrained={path}", "model.clip=frostline-tiny", "data.crop_size=64", "data.short_side_range=[64,72]",
                               f"output_dir={tmp_path / 'run'}"])
    weights = resolve_weights(cfg)                     # evaluate.run's path: no checkpoints, the released file
    with caplog.at_level(logging.INFO, logger="model.build"):
        model = build_eval_model(cfg, weights)
    assert model.student.boundary == "zeros"
    assert "boundary zeros (as the weights imply)" in caplog.text
    clips = torch.randn(1, 3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    visual = model.student.clip.visual
    with torch.no_grad():                              # the features are the zero-padded ones, not the masked
        got = model.student.encode_video(clips)[0]
        zeros = torch.nn.functional.normalize(video_features(visual, clips[0], 3, "zeros"), dim=-1)
        mask = torch.nn.functional.normalize(video_features(visual, clips[0], 3, "mask"), dim=-1)
    torch.testing.assert_close(got, zeros, rtol=1e-4, atol=1e-5)
    assert (got[0] - mask[0]).norm() > 1e-3


def test_the_command_line_boundary_wins_and_start_up_says_so(froster_file, tmp_path, caplog):
    path, _ = froster_file
    cfg = load_config(PRESETS[0], [f"model.pretrained={path}", "model.clip=frostline-tiny", "data.crop_size=64", "data.short_side_range=[64,72]",
                                   f"output_dir={tmp_path / 'run'}", "model.boundary=mask"])
    with caplog.at_level(logging.INFO, logger="model.build"):
        assert build_eval_model(cfg, resolve_weights(cfg)).student.boundary == "mask"
    assert "boundary mask (set by model.boundary, over the weights' zeros)" in caplog.text
    plain = load_config(PRESETS[0], ["model.pretrained=null", "model.clip=frostline-tiny", "data.crop_size=64", "data.short_side_range=[64,72]"])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="model.build"):
        assert build_model(plain).student.boundary == "mask"           # CLIP weights imply none: mask
    assert "boundary mask (the default (the weights imply none))" in caplog.text


def test_a_converted_vifi_clip_checkpoint_averages_frames_through_a_preset(tmp_path, capsys, caplog):
    """ViFi-CLIP's file, converted once with its token table (convert_weights.py --base), keeps what it implies
    (no temporal attention: frames averaged), and a preset does not override it."""
    torch.manual_seed(6)
    source, _ = build_clip("frostline-tiny", pretrained=None)
    vifi, base, out = tmp_path / "vifi_clip_k400.pth", tmp_path / "ViT-tiny.pt", tmp_path / "vifi_student.pt"
    weights_files.write_vifi_clip(source, vifi)
    weights_files.write_openai_torchscript(source, base)
    assert load_tool("convert_weights").main([str(vifi), str(out), "--base", str(base)]) == 0
    assert '"temporal": "none"' in capsys.readouterr().out
    cfg = load_config(PRESETS[0], [f"model.pretrained={out}", "model.clip=frostline-tiny", "data.crop_size=64", "data.short_side_range=[64,72]",
                                   f"output_dir={tmp_path / 'run'}"])
    assert cfg.model.temporal is None
    with caplog.at_level(logging.INFO, logger="model.build"):
        model = build_eval_model(cfg, resolve_weights(cfg))
    assert model.student.temporal == "none" and "temporal none" in caplog.text
    assert build_eval_model(load_config(PRESETS[0], [f"model.pretrained={out}", "model.clip=frostline-tiny",
                                                     "data.crop_size=64", "data.short_side_range=[64,72]", f"output_dir={tmp_path / 'run'}",
                                                     "model.temporal=neighbour"]), out).student.temporal == "neighbour"
