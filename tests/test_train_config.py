"""Config loading: YAML + dotted overrides into typed dataclasses; the presets; lr scaling and accumulation."""
from pathlib import Path

import pytest

from model.config import ConfigError, load_config
from model.data import split_paths
from model.optim import accumulation_steps, scaled_lr

CONFIGS = Path(__file__).resolve().parents[1] / "model" / "configs"


def test_overrides_are_typed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("output_dir: runs/x\ntrain: {epochs: 5, lr: 1.0e-5}\nmodel: {clip: frostline-tiny}\n")
    cfg = load_config(f, ["train.epochs=3", "model.pretrained=null", "train.betas=[0.8, 0.9]",
                          "data.short_side_range=[32, 40]", "data.crop_size=32", "train.lr=2e-5"])
    assert cfg.train.epochs == 3 and cfg.model.pretrained is None and cfg.train.betas == (0.8, 0.9)
    assert cfg.data.short_side_range == (32, 40) and cfg.train.lr == 2e-5 and cfg.model.clip == "frostline-tiny"
    assert cfg.output_dir == "runs/x"


@pytest.mark.parametrize("override,message", [
    ("train.epoch=3", "unknown key train.epoch"),
    ("train.epochs=three", "train.epochs: expected an integer"),
    ("train.mixed_precision=fp8", "train.mixed_precision='fp8'"),
    ("train.betas=[0.9]", "train.betas: expected 2 values"),
    ("train.epochs", "not of the form"),
    ("train.warmup_epochs=30", "train.warmup_epochs"),
    ("data.shuffle=random", "data.shuffle='random': expected one of auto, sample, interleave, shard"),
    ("data.interleave_shards=0", "data.interleave_shards=0: must be at least 1"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(None, [override])


def test_training_order_reaches_the_loader():
    """data.shuffle, data.interleave_shards and data.read_chunk_mb are the loader's (docs/pipeline.md, "Scale")."""
    from model.data import loader_config
    cfg = load_config(None, ["data.shuffle=interleave", "data.interleave_shards=3", "data.read_chunk_mb=8"])
    lc = loader_config(cfg, train=True, batch_size=4, device="cpu")
    assert (lc.shuffle, lc.interleave_shards, lc.read_chunk_mb) == ("interleave", 3, 8)
    assert loader_config(load_config(None, []), train=True, batch_size=4, device="cpu").shuffle == "auto"


def test_cross_k400_preset_matches_the_reference_recipe():
    cfg = load_config(CONFIGS / "cross_k400.yaml")
    t = cfg.train
    assert (t.epochs, t.warmup_epochs, t.global_batch, t.clip_grad, t.weight_decay) == (22, 2, 64, 1.0, 0.01)
    assert t.betas == (0.9, 0.999) and t.mixed_precision == "bf16" and t.average_from == 2
    assert scaled_lr(t) == pytest.approx((3.33e-6, 3.33e-8))   # the official lr at the preset's batch, unscaled
    assert cfg.model.clip == "ViT-B-16" and cfg.model.pretrained == "openai"
    assert cfg.data.protocol == "cross" and cfg.data.dataset == "k400"


def test_b2n_presets():
    """The official scripts: global batch 32 (64 for UCF101), every one at lr 3.33e-6, never scaled."""
    for name, batch in (("b2n_hmdb51", 32), ("b2n_k400", 32), ("b2n_ssv2", 32), ("b2n_ucf101", 64)):
        t = load_config(CONFIGS / f"{name}.yaml").train
        assert t.epochs == 12 and t.global_batch == batch
        assert scaled_lr(t) == pytest.approx((3.33e-6, 3.33e-8))
    for name in ("b2n_ucf101", "b2n_k400", "b2n_ssv2", "demo"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.data.protocol == "base2novel"


def test_accumulation_reaches_the_global_batch():
    assert accumulation_steps(64, 8, 1) == 8
    assert accumulation_steps(64, 8, 8) == 1
    assert accumulation_steps(32, 4, 2) == 4
    with pytest.raises(ConfigError, match="not a multiple"):
        accumulation_steps(64, 6, 1)


def test_split_paths_follow_make_splits_layout():
    cfg = load_config(None, ["data.splits=/s", "data.dataset=hmdb51", "data.train_set=2"])
    p = split_paths(cfg.data)
    assert p["train"] == "/s/base2novel/hmdb51/train_s2.parquet"
    assert p["eval"] == {"hmdb51": {"base": "/s/base2novel/hmdb51/eval_base.parquet",
                                    "novel": "/s/base2novel/hmdb51/eval_novel.parquet"}}
    cross = load_config(None, ["data.splits=s3://b/p/", "data.protocol=cross", "data.dataset=k400",
                               "data.eval_datasets=[ucf101]"])
    p = split_paths(cross.data)
    assert p["train"] == "s3://b/p/cross/k400/train.parquet"
    assert p["eval"]["ucf101"]["2"] == "s3://b/p/cross/ucf101/eval_2.parquet"
    assert p["eval"]["ucf101"]["full"] == "s3://b/p/cross/ucf101/eval_full.parquet"


def test_resume_refuses_changed_training_settings_only():
    from model.checkpoint import config_changes
    saved = load_config(CONFIGS / "demo.yaml").to_dict()
    same = load_config(CONFIGS / "demo.yaml", ["output_dir=/elsewhere", "train.log_every=1", "eval.batch_size=3",
                                               "data.num_threads=1", "train.betas=[0.9, 0.999]"]).to_dict()
    assert config_changes(saved, same) == []
    other = load_config(CONFIGS / "demo.yaml", ["train.epochs=3", "model.alpha=0.2"]).to_dict()
    epochs = saved["train"]["epochs"]
    assert epochs != 3 and saved["model"]["alpha"] == 0.1
    assert config_changes(saved, other) == ["model.alpha: 0.1 -> 0.2", f"train.epochs: {epochs} -> 3"]
