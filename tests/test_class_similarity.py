"""tools/class_similarity.py on cases with a known answer."""
from __future__ import annotations

import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from tool_module import load_tool
import torch
import torch.nn.functional as F

from model.clip import build_clip, export_clip
from shards.manifest import classes_table, write_table
from shards.storage import Store

BASE = ["juggling balls", "riding a bike", "playing guitar", "swimming"]
NOVEL = ["skateboarding", "playing guitar", "diving into a pool"]


tool = load_tool("class_similarity")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    torch.manual_seed(0)
    model, tokenizer = build_clip("frostline-tiny", pretrained=None)
    export_clip(model.state_dict(), root / "tiny.pt", "frostline-tiny")
    for name, classes in (("classes_base", BASE), ("classes_same", list(reversed(BASE))), ("classes_novel", NOVEL)):
        write_table(Store(str(root)), f"{name}.parquet", classes_table(classes))
    return root, model.eval(), tokenizer


def _rows(out: str) -> dict[str, list[float]]:
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\| (\S+) \| \S+ \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", line)
        if m:
            rows[m.group(1)] = [float(m.group(i)) for i in (2, 3, 4, 5)]
    return rows


def test_identical_class_lists_are_at_similarity_one(setup, capsys):
    root, _, _ = setup
    rc = tool.main(["--train", str(root / "classes_base.parquet"), "--eval", str(root / "classes_same.parquet"),
                    "--weights", str(root / "tiny.pt")])
    assert rc == 0
    assert _rows(capsys.readouterr().out)["classes_same"] == [4, 1.0, 1.0, 1.0]


def test_bare_text_similarity_matches_a_direct_computation(setup, capsys):
    """Independently: open_clip's own encode_text of each class text, cosine matrix, max per novel class, mean."""
    root, model, tokenizer = setup
    with torch.no_grad():
        base = F.normalize(model.encode_text(tokenizer(BASE)), dim=-1)
        novel = F.normalize(model.encode_text(tokenizer(NOVEL)), dim=-1)
    best = (novel @ base.T).max(dim=1).values
    assert float(best[1]) == pytest.approx(1.0, abs=1e-6)  # "playing guitar" is in both
    rc = tool.main(["--train", str(root / "classes_base.parquet"), "--eval", str(root / "classes_novel.parquet"),
                    "--weights", str(root / "tiny.pt"), "--bare"])
    assert rc == 0
    n, mean, lo, hi = _rows(capsys.readouterr().out)["classes_novel"]
    assert n == 3
    assert mean == pytest.approx(float(best.mean()), abs=6e-5)  # the table prints 4 decimals
    assert lo == pytest.approx(float(best.min()), abs=6e-5) and hi == pytest.approx(1.0, abs=6e-5)


def test_ensemble_features_are_evaluations(setup):
    root, _, _ = setup
    from model.froster import Froster
    m = Froster.build(None, root / "tiny.pt", teacher=False)
    feats = tool.text_features(m, NOVEL, bare=False)
    m.set_classes(NOVEL)
    assert torch.equal(feats, m.class_features())
    r = tool.similarity(tool.text_features(m, BASE, bare=False), feats)
    assert r["classes"] == 3 and r["max"] == pytest.approx(1.0, abs=1e-6) and r["min"] < r["mean"] < 1


def test_plot(setup, tmp_path, capsys):
    root, _, _ = setup
    png = tmp_path / "fig1.png"
    rc = tool.main(["--train", str(root / "classes_base.parquet"), "--eval", str(root / "classes_novel.parquet"),
                    str(root / "classes_same.parquet"), "--weights", str(root / "tiny.pt"), "--plot", str(png)])
    assert rc == 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in capsys.readouterr().err and not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_files_exit_2(setup, capsys):
    root, _, _ = setup
    assert tool.main(["--splits", str(root / "nowhere"), "--datasets", "ucf101", "--weights",
                      str(root / "tiny.pt")]) == 2
    assert "nowhere" in capsys.readouterr().err
