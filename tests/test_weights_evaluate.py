"""Released weights through the normal evaluation path: model.pretrained names the file, the weights decide
QuickGELU and the neighbour-frame boundary, the config overrides, model.checkpoint still works."""
from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import weights_files
from model.build import build_eval_model, build_model, pretrained, quick_gelu
from model.clip import build_clip, uses_quick_gelu
from model.config import ConfigError, load_config
from model.evaluate import resolve_weights


@pytest.fixture(scope="module")
def froster_file(tmp_path_factory):
    torch.manual_seed(5)
    student, _ = build_clip("frostline-tiny", pretrained=None)
    teacher, _ = build_clip("frostline-tiny", pretrained=None)
    path = tmp_path_factory.mktemp("released") / "swa_2_22.pth"
    weights_files.write_pyslowfast(student, teacher, path, projectors=True, epoch_file=False)
    return path, student


def _cfg(tmp_path, *overrides):
    return load_config(None, ["model.clip=frostline-tiny", "data.crop_size=64", f"output_dir={tmp_path / 'run'}",
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
