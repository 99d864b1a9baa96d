"""Uniform averaging of epoch checkpoints (swa_2_N)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.average import average_checkpoints, average_state_dicts, epoch_weights

REPO = Path(__file__).resolve().parents[1]


def _write_epochs(root: Path, n: int) -> None:
    for e in range(1, n + 1):
        d = root / f"epoch_{e:03d}"
        d.mkdir(parents=True)
        torch.save({"w": torch.full((2, 2), float(e)), "h": torch.tensor([e], dtype=torch.float16),
                    "steps": torch.tensor(7)}, d / "model.pt")
    (root / "epoch_009").mkdir()  # an unfinished epoch (no model.pt) is not a checkpoint


def test_average_epochs_2_to_last(tmp_path):
    _write_epochs(tmp_path, 4)
    assert sorted(epoch_weights(tmp_path)) == [1, 2, 3, 4]
    out = average_checkpoints(tmp_path, start=2)
    assert out.name == "swa_2_4.pt"
    avg = torch.load(out, weights_only=True)
    assert torch.equal(avg["w"], torch.full((2, 2), 3.0))           # (2+3+4)/3
    assert avg["h"].dtype == torch.float16 and avg["h"].item() == 3.0
    assert avg["steps"].item() == 7                                 # integer buffers are carried over
    assert (tmp_path / "epoch_004" / "model.pt").exists()           # the last epoch's weights are kept


def test_missing_epochs_and_mismatches_are_errors(tmp_path):
    _write_epochs(tmp_path, 3)
    with pytest.raises(FileNotFoundError, match="missing \\[4, 5\\]"):
        average_checkpoints(tmp_path, start=2, end=5)
    torch.save({"w": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt"):
        average_state_dicts([tmp_path / "epoch_001" / "model.pt", tmp_path / "bad.pt"])


def test_cli(tmp_path):
    _write_epochs(tmp_path / "checkpoints", 3)
    r = subprocess.run([sys.executable, str(REPO / "model" / "average.py"), str(tmp_path), "--from", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    avg = torch.load(tmp_path / "checkpoints" / "swa_1_3.pt", weights_only=True)
    assert torch.equal(avg["w"], torch.full((2, 2), 2.0))


def test_exported_clip_format_round_trips(tmp_path):
    from model.clip import export_clip
    for e in (1, 2, 3):
        (tmp_path / f"epoch_{e:03d}").mkdir()
        export_clip({"w": torch.full((3,), float(e))}, tmp_path / f"epoch_{e:03d}" / "model.pt", "frostline-tiny")
    obj = torch.load(average_checkpoints(tmp_path, start=2), weights_only=True)
    assert obj["model_name"] == "frostline-tiny" and torch.equal(obj["state_dict"]["w"], torch.full((3,), 2.5))
