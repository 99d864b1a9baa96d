"""Damaged run-folder bookkeeping, unreadable weights and empty splits end in one line naming the file, exit 2:
through train, evaluate, average and convert_weights as a user runs them."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa
import pytest
import torch
from tool_module import load_tool

from model import average, evaluate, train
from model.checkpoint import CheckpointError, check_resumable, latest_checkpoint, read_state
from model.config import load_config
from model.weights import WeightsError, read_weights
from shards.cli import run

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def write_config(tmp_path: Path) -> Path:
    """frostline-tiny on CPU (tests/train_data.py's config), output under tmp_path/run, splits under tmp_path/splits."""
    from train_data import write_tiny_config
    return write_tiny_config(tmp_path / "c.yaml", tmp_path / "splits", tmp_path / "run", eval_batch=8,
                             train={"epochs": 2, "lr_reference_batch": 4})


def one_line(capsys, prog: str) -> str:
    """The one error line on stderr (log lines of the start-up may precede it; no traceback)."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------------------------- latest.json
@pytest.mark.parametrize("content,message", [
    (b"{\"path\": \"epoch_002\"", "not a readable resume pointer"),        # cut short
    (b"\xff\xfe\x00garbage", "not a readable resume pointer"),            # not UTF-8
    (b"[]", "expected {\"path\""),
    (b"{\"global_step\": 3}", "expected {\"path\""),
    (b"{\"path\": 7}", "expected {\"path\""),
    (b"{\"path\": \"../../../etc\"}", "got {'path': '../../../etc'}"),    # never a folder outside the run
])
def test_a_damaged_latest_json_is_named(tmp_path, content, message):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "latest.json").write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint(ckpt)
    assert str(ckpt / "latest.json") in str(e.value) and message in str(e.value)


def test_train_with_a_damaged_latest_json_prints_one_line(tmp_path, capsys):
    f = write_config(tmp_path)
    ckpt = tmp_path / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "latest.json").write_text("not json")
    assert run(train.main, ["--config", str(f)], prog="train") == 2
    line = one_line(capsys, "train")
    assert f"{ckpt / 'latest.json'}: not a readable resume pointer" in line and "remove" in line


# -------------------------------------------------------------------------------------------------- state.pt
def _state(cfg) -> dict:
    return {"model": {}, "optimizer": {}, "scheduler": {}, "scaler": {}, "loader": {}, "epoch": 0,
            "step_in_epoch": 3, "global_step": 3, "num_processes": 1, "config": cfg.to_dict()}


def test_half_a_state_pt_is_named_by_train(tmp_path, capsys):
    f = write_config(tmp_path)
    folder = tmp_path / "run" / "checkpoints" / "epoch_001"
    folder.mkdir(parents=True)
    buf = io.BytesIO()
    torch.save(_state(load_config(f)), buf)
    (folder / "state.pt").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder.parent / "latest.json").write_text(json.dumps({"path": "epoch_001", "global_step": 3}))
    assert run(train.main, ["--config", str(f)], prog="train") == 2
    assert f"{folder / 'state.pt'}: not a readable resume state" in one_line(capsys, "train")


@pytest.mark.parametrize("state,message", [
    ([1, 2, 3], "holds a list, not a resume state"),
    ({"model": {}}, "not a frostline resume state (missing or wrong: optimizer, scheduler, config"),
    ("config-as-text", "holds a str"),
])
def test_a_state_pt_of_another_shape_is_named(tmp_path, state, message):
    cfg = load_config(write_config(tmp_path))
    folder = tmp_path / "epoch_001"
    folder.mkdir()
    torch.save(state, folder / "state.pt")
    with pytest.raises(CheckpointError) as e:
        check_resumable(folder, cfg, 1)
    assert str(folder / "state.pt") in str(e.value) and message in str(e.value)


def test_a_sound_state_pt_passes_the_check(tmp_path):
    cfg = load_config(write_config(tmp_path))
    folder = tmp_path / "epoch_001"
    folder.mkdir()
    torch.save(_state(cfg), folder / "state.pt")
    assert check_resumable(folder, cfg, 1)["global_step"] == 3


def test_a_damaged_rng_file_is_named(tmp_path):
    path = tmp_path / "rng_rank0.pt"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="rng_rank0.pt: not a readable resume state"):
        read_state(path)


# --------------------------------------------------------------------------------------------------- weights
def _damaged(kind: str, tmp_path: Path, good: Path) -> Path:
    path = tmp_path / f"{kind}.pt"
    data = good.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zip-of-junk":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x05junk")
    elif kind == "safetensors-header":
        path.write_bytes((64).to_bytes(8, "little") + b"{" + b"\x00" * 200)
    elif kind == "a-list":
        torch.save([torch.zeros(2)], path)
    elif kind == "pickle-payload":
        import pickle
        path.write_bytes(pickle.dumps(os.system, protocol=2))   # weights_only=True refuses it; nothing runs
    return path


KINDS = ["empty", "text", "truncated", "zip-of-junk", "safetensors-header", "a-list", "pickle-payload"]


@pytest.mark.parametrize("kind", KINDS)
def test_unreadable_weights_are_a_weights_error_naming_the_file(tmp_path, tiny_clip_file, kind):
    path = _damaged(kind, tmp_path, tiny_clip_file)
    with pytest.raises(WeightsError) as e:
        read_weights(path)
    assert str(path) in str(e.value)


def test_evaluate_with_unreadable_weights_prints_one_line(tmp_path, tiny_clip_file):
    """The real command: `python model/evaluate.py --config F --weights W` with half a weights file."""
    f = write_config(tmp_path)
    bad = _damaged("truncated", tmp_path, tiny_clip_file)
    r = subprocess.run([sys.executable, "model/evaluate.py", "--config", str(f), "--weights", str(bad)], cwd=REPO,
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("evaluate: error:")]
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("kind", ["text", "zip-of-junk", "a-list"])
def test_train_eval_only_with_unreadable_weights_prints_one_line(tmp_path, tiny_clip_file, capsys, kind):
    f = write_config(tmp_path)
    bad = _damaged(kind, tmp_path, tiny_clip_file)
    assert run(train.main, ["--config", str(f), "--eval-only", "--weights", str(bad)], prog="train") == 2
    assert str(bad) in one_line(capsys, "train")


def test_model_pretrained_naming_unreadable_weights_prints_one_line(tmp_path, tiny_clip_file, capsys):
    bad = _damaged("truncated", tmp_path, tiny_clip_file)
    f = write_config(tmp_path)
    assert run(evaluate.main, ["--config", str(f), "--zero-shot", f"model.pretrained={bad}"], prog="evaluate") == 2
    assert str(bad) in one_line(capsys, "evaluate")


def test_average_names_a_damaged_epoch_file(tmp_path, tiny_clip_file, capsys):
    ckpt = tmp_path / "checkpoints"
    for e in (1, 2, 3):
        (ckpt / f"epoch_{e:03d}").mkdir(parents=True)
        (ckpt / f"epoch_{e:03d}" / "model.pt").write_bytes(tiny_clip_file.read_bytes())
    bad = ckpt / "epoch_002" / "model.pt"
    bad.write_bytes(tiny_clip_file.read_bytes()[:1000])
    assert run(average.main, [str(tmp_path)], prog="average") == 2
    assert f"{bad}: not a readable weights file" in one_line(capsys, "average")
    assert not (ckpt / "swa_2_3.pt").exists()


@pytest.mark.parametrize("argv,message", [
    (["--from", "0"], "argument --from: must be at least 1, got '0'"),
    (["--to", "-1"], "argument --to: must be at least 1, got '-1'"),
    (["--from", "two"], "argument --from: expected a whole number, got 'two'"),
])
def test_average_refuses_bad_epoch_numbers(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        average.main([str(tmp_path), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_average_out_into_a_missing_folder_is_refused_first(tmp_path, capsys):
    out = tmp_path / "nowhere" / "swa.pt"
    assert run(average.main, [str(tmp_path), "--out", str(out)], prog="average") == 2
    assert f"{out}: the folder {out.parent} does not exist" in one_line(capsys, "average")


@pytest.mark.parametrize("kind", ["truncated", "text", "pickle-payload"])
def test_convert_weights_names_unreadable_input(tmp_path, tiny_clip_file, capsys, kind):
    convert = load_tool("convert_weights")
    bad = _damaged(kind, tmp_path, tiny_clip_file)
    assert run(convert.main, [str(bad), str(tmp_path / "out.pt")], prog="convert_weights") == 2
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()


def test_convert_weights_refuses_an_output_folder_that_does_not_exist(tmp_path, tiny_clip_file, capsys):
    convert = load_tool("convert_weights")
    out = tmp_path / "no" / "such" / "out.pt"
    assert run(convert.main, [str(tiny_clip_file), str(out)], prog="convert_weights") == 2
    assert f"{out}: the folder" in one_line(capsys, "convert_weights")


# ------------------------------------------------------------------------------------------------ empty splits
def _empty_split_set(root: Path) -> Path:
    """base2novel/ucf101 split files with no rows (their classes files are sound)."""
    import pyarrow.parquet as pq
    from shards.protocols.core import CLASS_SCHEMA, ROW_SCHEMA
    folder = root / "base2novel" / "ucf101"
    folder.mkdir(parents=True)
    for name in ("classes_base", "classes_novel"):
        pq.write_table(pa.Table.from_pylist([{"label": 0, "class_name": "A", "prompt": "a", "source_label": 0},
                                             {"label": 1, "class_name": "B", "prompt": "b", "source_label": 1}],
                                            schema=CLASS_SCHEMA), folder / f"{name}.parquet")
    for name, classes in (("train_s1", "classes_base"), ("eval_base", "classes_base"),
                          ("eval_novel", "classes_novel")):
        schema = ROW_SCHEMA.with_metadata({b"classes_file": f"{classes}.parquet".encode()})
        pq.write_table(pa.Table.from_pylist([], schema=schema), folder / f"{name}.parquet")
    return folder


def test_training_on_an_empty_split_names_it(tmp_path, capsys):
    folder = _empty_split_set(tmp_path / "splits")
    f = write_config(tmp_path)
    assert run(train.main, ["--config", str(f)], prog="train") == 2
    assert f"{folder / 'train_s1.parquet'}: the split has no rows" in one_line(capsys, "train")


def test_evaluating_an_empty_split_names_it(tmp_path, capsys):
    folder = _empty_split_set(tmp_path / "splits")
    f = write_config(tmp_path)
    assert run(evaluate.main, ["--config", str(f), "--zero-shot"], prog="evaluate") == 2
    assert f"{folder / 'eval_base.parquet'}: the split has no rows" in one_line(capsys, "evaluate")


def test_weights_with_nan_values_are_refused_naming_a_tensor(tmp_path, tiny_clip_file):
    obj = torch.load(tiny_clip_file, weights_only=True)
    name = next(k for k, v in obj["state_dict"].items() if v.is_floating_point())
    obj["state_dict"][name][...] = float("nan")
    path = tmp_path / "diverged.pt"
    torch.save(obj, path)
    with pytest.raises(WeightsError, match=f"diverged.pt: NaN values in 1 tensor\\(s\\), e.g. {name}"):
        read_weights(path)


@pytest.mark.parametrize("override,message", [
    ("model.clip=nonesuch", "unknown CLIP model 'nonesuch'"),
    ("model.pretrained=not-a-tag", "cannot build 'frostline-tiny' with pretrained='not-a-tag'"),
])
def test_a_model_that_cannot_be_built_is_one_line(tmp_path, capsys, override, message):
    f = write_config(tmp_path)
    assert run(evaluate.main, ["--config", str(f), "--zero-shot", override], prog="evaluate") == 2
    assert message in one_line(capsys, "evaluate")


def test_evaluate_out_that_is_a_file_is_refused_before_evaluating(tmp_path, capsys):
    f = write_config(tmp_path)
    out = tmp_path / "results"
    out.write_text("a file")
    assert run(evaluate.main, ["--config", str(f), "--zero-shot", "--out", str(out)], prog="evaluate") == 2
    assert f"{out}: is a file; the --out needs a folder" in one_line(capsys, "evaluate")


def test_a_state_whose_optimiser_does_not_fit_the_model_is_named(tmp_path):
    from accelerate import Accelerator

    from model.checkpoint import load_checkpoint
    cfg = load_config(write_config(tmp_path))
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    state = {**_state(cfg), "model": model.state_dict(),
             "optimizer": {"state": {}, "param_groups": [{"params": [0, 1, 2], "lr": 1.0}]}}   # 3 tensors, not 2
    with pytest.raises(CheckpointError, match="epoch_001/state.pt does not fit this run"):
        load_checkpoint(tmp_path / "epoch_001", Accelerator(cpu=True), model, optimizer, scheduler, cfg, state)
