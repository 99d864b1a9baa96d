"""The training recipe end to end on CPU: real shards, real splits, the DALI loader, a tiny open_clip CLIP.

Covers: outputs (checkpoints, average, results, logs), exact resume after a SIGKILL, a 2-process DDP run (launched
the way that really starts 2 CPU processes), evaluation on 2 ranks counting each clip once, the zero-shot
baseline, and the checkpoint round trip.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_data import TWO_PROCESS_RUN, write_tiny_config
import torch

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def data(train_dataset):
    """4 learnable classes (2 base, 2 novel), 8 UCF groups x 1 clip: 12 training clips, 4 + 4 evaluation clips."""
    return train_dataset


def write_config(path: Path, data: Path, out: Path, **train) -> Path:
    return write_tiny_config(path, data / "splits", out, eval_batch=5, train={"epochs": 3, "keep_states": 2, **train})


def run(args: list[str], timeout: int = 300, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable]) + args
    r = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


def records(out: Path) -> dict[int, dict]:
    """metrics.jsonl, the last record of each step (a resumed run appends the steps it redoes)."""
    out_ = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # the line a SIGKILL cut short
            continue
        out_[r["step"]] = r
    return out_


# --------------------------------------------------------------------------------------------------- unit pieces
def test_lr_schedule_warmup_then_cosine():
    from model.optim import lr_at
    kw = dict(total=100, warmup=10, peak=1e-3, final=1e-5)
    assert lr_at(0, **kw) == pytest.approx(1e-5)
    assert lr_at(5, **kw) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    assert lr_at(10, **kw) == pytest.approx(1e-3)
    assert lr_at(55, **kw) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(100, **kw) == pytest.approx(1e-5)
    assert all(lr_at(s, **kw) >= lr_at(s + 1, **kw) for s in range(10, 100))


def test_no_weight_decay_on_1d_parameters():
    from model.froster import Froster
    from model.optim import param_groups
    model = Froster.build("frostline-tiny", None)
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "student.clip.logit_scale" in no_decay_names
    assert any(n.endswith("ln_1.weight") for n in no_decay_names) and any(n.endswith(".bias") for n in no_decay_names)
    grouped = {id(p) for g in (decay, no_decay) for p in g["params"]}
    assert grouped == {id(p) for p in model.trainable_parameters()}
    assert not any(names[i].startswith("teacher.") for i in grouped)


# ------------------------------------------------------------------------------------------------- whole runs
@pytest.mark.slow
def test_train_writes_checkpoints_average_logs_and_results(data, tmp_path):
    from model.average import load_weights
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", data, out)
    r = run(["model/train.py", "--config", str(cfg)])
    ckpt = out / "checkpoints"
    # one checkpoint per epoch; weights always kept, resume states only for the newest keep_states=2
    assert all((ckpt / f"epoch_{e:03d}" / "model.pt").exists() for e in (1, 2, 3))
    assert [e for e in (1, 2, 3) if (ckpt / f"epoch_{e:03d}" / "state.pt").exists()] == [2, 3]
    state = torch.load(ckpt / "epoch_003" / "state.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "loader", "epoch", "global_step"} <= set(state)
    assert state["loader"]["epoch"] == 2 and state["global_step"] == 9          # 12 clips / 4 per step x 3
    assert not any(k.startswith("teacher.") for k in state["model"])
    assert any(k.startswith("proj_v.") for k in state["model"])
    # the evaluated model is the uniform average of epochs 2..3
    avg, _ = load_weights(ckpt / "swa_2_3.pt")
    w2, _ = load_weights(ckpt / "epoch_002" / "model.pt")
    w3, _ = load_weights(ckpt / "epoch_003" / "model.pt")
    k = "visual.conv1.weight"
    assert torch.allclose(avg[k], (w2[k] + w3[k]) / 2) and not torch.equal(w2[k], w3[k])
    # logs: one record per optimiser step with the warm-up/cosine lr; TensorBoard events
    rec = records(out)
    assert sorted(rec) == list(range(1, 10))
    lrs = [rec[s]["lr"] for s in range(1, 10)]
    peak = 1e-3 * 4 / 64
    assert lrs[0] == pytest.approx(1e-5 * 4 / 64) and lrs[3] == pytest.approx(peak) and lrs[-1] < lrs[4]
    assert all(torch.isfinite(torch.tensor(rec[s]["loss"])) for s in rec)
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    # results
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"] == "base2novel" and res["dataset"] == "ucf101"
    assert res["num_base_classes"] == 2 and res["num_novel_classes"] == 2
    assert res["num_base_samples"] == 4 and res["num_novel_samples"] == 4
    assert res["hm"] == pytest.approx(2 * res["base_top1"] * res["novel_top1"] /
                                      max(1e-9, res["base_top1"] + res["novel_top1"]))
    assert "| ucf101 |" in (out / "results.md").read_text() and "| ucf101 |" in r.stdout

    # evaluate.py: the zero-shot baseline (the frozen initial CLIP)
    run(["model/evaluate.py", "--config", str(cfg), "--zero-shot"])
    zs = json.loads((out / "zero_shot" / "results.json").read_text())
    assert zs["weights"] == "zero-shot" and zs["num_novel_samples"] == 4


@pytest.mark.slow
def test_exact_resume_after_kill(data, tmp_path):
    """Kill -9 a run mid-training, re-run the same command: every later loss equals the uninterrupted run's."""
    extra = dict(epochs=3, global_batch=2, micro_batch=1, save_every_steps=2)   # 18 steps, resume points mid-epoch
    ref = tmp_path / "ref"
    run(["model/train.py", "--config", str(write_config(tmp_path / "ref.yaml", data, ref, **extra)), "--no-eval"])

    out = tmp_path / "killed"
    cfg = write_config(tmp_path / "k.yaml", data, out, **extra)
    cmd = [sys.executable, "model/train.py", "--config", str(cfg), "--no-eval"]
    err = open(tmp_path / "killed.stderr", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    pointer = out / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the first resume point (step 2, mid-epoch 1) exists: kill now
    proc.wait()
    killed_at = json.loads(pointer.read_text())["global_step"]
    assert killed_at < 18, "the run finished before it could be killed"
    r = run(cmd[1:])
    assert f"resumed from {out / 'checkpoints'}" in r.stderr

    err.close()
    a, b = records(ref), records(out)
    assert not any(r["decode_errors"] for r in [*a.values(), *b.values()]), (tmp_path / "killed.stderr").read_text()
    assert sorted(b) == sorted(a) == list(range(1, 19))
    for s in a:
        assert b[s]["loss"] == a[s]["loss"], f"step {s}: {b[s]['loss']} != {a[s]['loss']} (resumed at {killed_at})"
        assert b[s]["lr"] == a[s]["lr"]
    wa = torch.load(ref / "checkpoints" / "epoch_003" / "model.pt", weights_only=True)["state_dict"]
    wb = torch.load(out / "checkpoints" / "epoch_003" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_two_process_cpu_ddp_and_fsdp(ddp_run, fsdp_run, tmp_path):
    """2 CPU processes (gloo): global batch 4 = 2 processes x 2 clips, no accumulation; evaluation on both ranks
    counts every clip once and matches a 1-process evaluation of the same weights; FSDP, which accelerate runs on
    GPUs only, is torch's FSDP set up by frostline on CPU processes and trains to the DDP run's losses.
    The runs are the session's `ddp_run` and `fsdp_run`, which the kill tests resume against; the test that first
    asks for them trains them (about 40 s on 2 cores beside another test worker: two launches of 2 processes)."""
    out = ddp_run
    assert TWO_PROCESS_RUN["epochs"] == 2 and TWO_PROCESS_RUN["global_batch"] == 4
    assert "2 process(es) x 2 clips x 1 accumulation = 4 clips/step" in (out.parent / "stderr.txt").read_text()
    ckpt = out / "checkpoints" / "epoch_002"
    assert (ckpt / "rng_rank0.pt").exists() and (ckpt / "rng_rank1.pt").exists()
    state = torch.load(ckpt / "state.pt", weights_only=True)
    assert state["num_processes"] == 2 and state["global_step"] == 6   # 12 clips / 4 per step x 2 epochs
    r0 = torch.load(ckpt / "rng_rank0.pt", weights_only=True)["rng"]["torch"]
    r1 = torch.load(ckpt / "rng_rank1.pt", weights_only=True)["rng"]["torch"]
    assert not torch.equal(r0, r1)   # each rank has its own random stream
    two = json.loads((out / "results.json").read_text())
    assert two["num_base_samples"] == 4 and two["num_novel_samples"] == 4
    run(["model/evaluate.py", "--config", str(out.parent / "run.yaml"), "--out", str(tmp_path / "one"),
         "--weights", str(out / "checkpoints" / "swa_1_2.pt")])
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    for k in ("base_top1", "novel_top1", "hm", "base_top5", "num_base_samples", "num_novel_samples"):
        assert one[k] == pytest.approx(two[k]), k

    # accelerate runs FSDP on GPUs only (on CPU processes it would silently train with DDP); there frostline wraps
    # the model in torch's FSDP itself: the same training, sharded, gives the DDP run's losses.
    ddp, fsdp = records(out), records(fsdp_run)
    assert sorted(ddp) == sorted(fsdp) == list(range(1, 7))
    for s in ddp:
        assert fsdp[s]["loss"] == pytest.approx(ddp[s]["loss"], rel=1e-4), s


def test_checkpoint_round_trip(data, tmp_path):
    """save_checkpoint -> load_checkpoint restores model, optimiser, scheduler, loader position and RNG."""
    from accelerate import Accelerator

    from model.config import load_config

    cfg = load_config(write_config(tmp_path / "c.yaml", data, tmp_path / "run"))
    acc = Accelerator(cpu=True)
    try:
        _round_trip(acc, cfg, data, tmp_path)
    finally:  # accelerate's state is process-wide: leave none behind for other tests
        from accelerate.state import AcceleratorState
        AcceleratorState._reset_state(reset_partial_state=True)


def _round_trip(acc, cfg, data, tmp_path):
    from model import prompts
    from model.froster import Froster
    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.data import loader_config
    from model.optim import param_groups
    from pipeline.loader import build_loader

    loader = build_loader(str(data / "splits/base2novel/ucf101/train_s1.parquet"),
                          loader_config(cfg, train=True, batch_size=2, device="cpu"))

    def fresh(seed):
        torch.manual_seed(seed)
        m = Froster.build("frostline-tiny", None)
        m.set_classes(prompts.class_texts(loader.classes))
        o = torch.optim.AdamW(param_groups(m, 0.01), lr=1e-3)
        s = torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1.0 / (1 + step))
        return m, o, s

    model, opt, sched = fresh(0)
    batches = iter(loader)
    for _ in range(2):
        b = next(batches)
        model(b.clips, b.labels).loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
    path = tmp_path / "ckpt"
    save_checkpoint(path, acc, model, opt, sched, loader, epoch=0, step_in_epoch=2, global_step=2, cfg=cfg,
                    weights=True)
    expected_rand = torch.rand(3)
    expected_next = next(batches)

    model2, opt2, sched2 = fresh(1)
    loader2 = build_loader(str(data / "splits/base2novel/ucf101/train_s1.parquet"),
                           loader_config(cfg, train=True, batch_size=2, device="cpu"))
    state = load_checkpoint(path, acc, model2, opt2, sched2, cfg)
    assert torch.equal(torch.rand(3), expected_rand)
    sd1, sd2 = model.state_dict(), model2.state_dict()
    trained = [k for k in sd1 if not k.startswith("teacher.")]   # the teacher is rebuilt from the pretrained CLIP
    assert all(torch.equal(sd1[k], sd2[k]) for k in trained)
    assert sched2.last_epoch == 2 and sched2.get_last_lr() == sched.get_last_lr()
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys() and all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)
    assert state["global_step"] == 2 and state["loader"]["batch"] == 2
    loader2.load_state_dict(state["loader"])
    resumed_next = next(iter(loader2))
    assert resumed_next.keys == expected_next.keys and torch.equal(resumed_next.clips, expected_next.clips)
    exported = torch.load(path / "model.pt", weights_only=True)
    assert exported["model_name"] == "frostline-tiny"
    assert all(torch.equal(v, model.student_state_dict()[k]) for k, v in exported["state_dict"].items())
