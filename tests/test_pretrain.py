"""tools/pretrain_clip.py: pre-training on the world's captioned frames teaches zero-shot recognition of
(colour, shape) combinations it never saw; the run is reproducible from its seed and reused when already there.
Slow: 142 s on the project's 2-core machine at load 2-3."""
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model import kernels  # noqa: E402
from tools import pretrain_clip  # noqa: E402

SHORT = {**pretrain_clip.DEFAULTS, "steps": 80, "images": 800}


@pytest.mark.slow
def test_pretraining_improves_zero_shot_on_held_out_combinations(tmp_path):
    lines = []
    info = pretrain_clip.pretrain(tmp_path / "clip.pt", **SHORT, log=lines.append)
    # frames of 9 held-out (colour, shape) pairs, classified among all 54 colour x shape captions: chance ~1.9 %
    # (an untrained model maps every frame to nearly the same caption: at most one held-out pair's share, 11.1 %)
    from shards.generated import world
    assert info["chance"] == pytest.approx(100 / (len(world.COLOURS) * len(world.SHAPES)))
    assert info["zero_shot_untrained"] <= 12.5
    assert info["zero_shot_trained"] >= max(3 * info["chance"], info["zero_shot_untrained"] + 5), info
    assert set(map(tuple, info["held_out"])) == set(pretrain_clip.HELD_OUT)
    side = json.loads((tmp_path / "clip.json").read_text())
    # the settings, and the CPU kernels they ran on (model/kernels.py): a cache made on other kernels is not reused
    assert side["settings"] == {**SHORT, "kernels": kernels.pinned()}
    assert side["zero_shot_trained"] == info["zero_shot_trained"]
    # the checkpoint loads as the named open_clip model, as model/train.py loads it (model.checkpoint=...)
    from model.clip import build_clip
    clip, tok = build_clip("frostline-world", pretrained=None, checkpoint=tmp_path / "clip.pt")
    assert tok(["a red square"]).shape == (1, 32)
    # a second call with the same settings reuses the file
    again = []
    pretrain_clip.pretrain(tmp_path / "clip.pt", **SHORT, log=again.append)
    assert len(again) == 1 and "already there" in again[0]


@pytest.mark.slow
def test_pretraining_is_reproducible_from_its_seed(tmp_path):
    """Same seed, same thread count, same machine: the same weights (compared at a tolerance scaled to their norm,
    though on one machine they come out bit-identical)."""
    tiny = {**pretrain_clip.DEFAULTS, "steps": 8, "batch": 32, "images": 200}   # small: the claim is about seeds
    a = pretrain_clip.pretrain(tmp_path / "a.pt", **tiny, log=lambda m: None)
    b = pretrain_clip.pretrain(tmp_path / "b.pt", **tiny, log=lambda m: None)
    c = pretrain_clip.pretrain(tmp_path / "c.pt", **{**tiny, "seed": 1}, log=lambda m: None)
    wa, wb, wc = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["state_dict"] for n in "abc")
    assert a["final_loss"] == b["final_loss"]
    for k in wa:
        scale = wa[k].float().norm().item() + 1e-3
        assert (wa[k].float() - wb[k].float()).norm().item() <= 1e-6 * scale, k
    moved = sum((wa[k].float() - wc[k].float()).norm().item() for k in wa if wa[k].is_floating_point())
    assert moved > 1.0  # another seed is another run
