"""Faults a production user meets, on the training and evaluation side (issue 12), with real processes, real
signals, a really full file system and really damaged shards:

- one live run per output_dir: a second run is refused naming the first; a lock left by SIGKILL is taken over;
- a refused resume leaves config.yaml as it was; --eval-only on an unfinished run is refused unless allowed;
- data health: a corrupt evaluation video and a truncated tar are counted and named in results.json, and an
  evaluation that covers fewer samples than the split fails unless eval.max_missing allows it;
- clear one-line errors (exit 2): disk full while checkpointing, broken YAML, an unusable output folder, a
  damaged weights file for average.py, a launch whose mixed precision contradicts the config;
- 2 CPU processes: a run killed with SIGKILL of `accelerate launch` (whose ranks die with it) resumes to the
  uninterrupted run's losses, under DDP and under FSDP (full optimiser state saved); an FSDP launch config that
  contradicts the YAML is refused.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from train_data import ENV, REPO, launch_two_processes, two_process_launcher, write_tiny_config
import torch



@pytest.fixture(scope="module")
def data(train_dataset):
    """4 learnable classes (2 base, 2 novel): 12 training clips, 4 + 4 evaluation clips, one tar shard."""
    return train_dataset


def write_config(path: Path, splits: Path, out: Path, **train) -> Path:
    return write_tiny_config(path, splits, out, eval_batch=6, train={"epochs": 2, "average_from": 1, **train})


def cli(args: list[str], timeout: int = 300, env: dict | None = None):
    return subprocess.run([sys.executable] + args, cwd=REPO, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, no traceback, and one stderr line is the error, naming what it must name."""
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-4000:]
    assert "Traceback" not in r.stderr, r.stderr[-4000:]
    lines = [line for line in r.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1, r.stderr[-4000:]
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def _records(out: Path) -> dict[int, dict]:
    got = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        got[r["step"]] = r
    return got


# ------------------------------------------------------------------------------------ one live run per output_dir
HOLDER = """
import sys, time
from shards.storage.lock import output_lock
output_lock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_second_live_run_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path):
    from shards.storage.lock import LockHeld, output_lock

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
            output_lock(str(out)).acquire()
        # the training entry point refuses before writing anything, naming the live run
        cfg = write_config(tmp_path / "c.yaml", tmp_path / "no-splits", out)
        one_line_error(cli(["model/train.py", "--config", str(cfg)]), str(out), f"pid {holder.pid}",
                       "one live run per output")
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = output_lock(str(out)).acquire()   # the holder died without cleaning up: its lock is stale and taken over
    assert lock.took_over["pid"] == holder.pid
    assert json.loads((out / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (out / "run.lock").exists()


def test_a_damaged_run_lock_is_one_line_naming_it(tmp_path):
    """A run.lock that is not a JSON object (edited, truncated by a full disk) is not guessed about: exit 2,
    naming the file, and the file is left for a person to look at."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.lock").write_text("[1, 2")
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "no-splits", out)
    one_line_error(cli(["model/train.py", "--config", str(cfg)]), str(out / "run.lock"), "damaged run lock")
    assert (out / "run.lock").read_text() == "[1, 2"


@pytest.mark.slow
def test_killed_run_refused_resume_keeps_config_and_eval_only_needs_a_finished_run(data, tmp_path):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", data / "splits", out, epochs=3)
    proc = subprocess.Popen([sys.executable, "model/train.py", "--config", str(cfg), "--no-eval"], cwd=REPO,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pointer = out / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads(pointer.read_text())["path"] == "epoch_001", "the run finished before it could be killed"
    saved = (out / "config.yaml").read_bytes()

    # a resume with other settings is refused naming them, and the folder still describes the real run; the
    # killed run's lock was recognised as stale and taken over first
    r = cli(["model/train.py", "--config", str(cfg), "train.lr=0.002"])
    one_line_error(r, "train.lr: 0.001 -> 0.002")
    assert "taking over the lock of a run that is gone" in r.stderr and str(out / "run.lock") in r.stderr
    assert (out / "config.yaml").read_bytes() == saved

    # evaluating an unfinished run is refused, unless asked for (the killed run's lock is taken over)
    one_line_error(cli(["model/train.py", "--config", str(cfg), "--eval-only"]), "1 of 3 epochs", "--allow-partial")
    r = cli(["model/train.py", "--config", str(cfg), "--eval-only", "--allow-partial"])
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads((out / "results.json").read_text())
    assert res["weights"].endswith("swa_1_1.pt") and res["num_base_samples"] == 4   # average_from=1: epoch 1 alone


# ------------------------------------------------------------------------------------------------------ data health
def _damage_copy(data: Path, tmp: Path, how: str) -> tuple[Path, str]:
    """A copy of the dataset whose shard is damaged at one novel evaluation sample; returns (splits, its key)."""
    root = tmp / how
    shutil.copytree(data / "shards", root / "shards")
    shutil.copytree(data / "splits", root / "splits")
    novel = pq.read_table(root / "splits/base2novel/ucf101/eval_novel.parquet").to_pylist()
    victim = max(novel, key=lambda r: r["offset"])      # the novel sample stored last in the tar
    tar = root / "shards" / Path(victim["shard"]).name   # the copy (split files name shards by absolute path)
    for split in (root / "splits").rglob("*.parquet"):  # splits name their shards by URL: point them at the copy
        t = pq.read_table(split)
        if "shard" in t.schema.names:
            text = [str(s).replace(str(data / "shards"), str(root / "shards")) for s in t.column("shard").to_pylist()]
            fixed = t.set_column(t.schema.get_field_index("shard"), "shard", pa.array(text))
            meta = {k: (v.decode().replace(str(data / "shards"), str(root / "shards")).encode() if k == b"store" else v)
                    for k, v in t.schema.metadata.items()}
            pq.write_table(fixed.replace_schema_metadata(meta), split)
    for manifest in (root / "splits").rglob("split_set.json"):   # the edited files are no longer the set it lists
        manifest.unlink()
    if how == "truncated":
        with open(tar, "r+b") as f:
            f.truncate(victim["offset"] + 1024)  # the tar ends inside the victim's video
    else:  # overwrite the whole video member with garbage of the same length
        import tarfile
        with tarfile.open(tar) as t:
            member = next(m for m in t.getmembers() if m.name.startswith(victim["key"] + ".")
                          and m.name.endswith((".mp4", ".webm", ".mkv")))
        with open(tar, "r+b") as f:
            f.seek(member.offset_data)
            f.write(os.urandom(member.size))
    return root / "splits", victim["key"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["corrupt", "truncated"])
def test_damaged_evaluation_data_is_counted_and_fails_unless_allowed(data, tmp_path, how):
    splits, key = _damage_copy(data, tmp_path, how)
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", splits, out)
    line = one_line_error(cli(["model/evaluate.py", "--config", str(cfg), "--zero-shot"]), "eval_novel.parquet",
                          "eval.max_missing")
    assert "of 4 samples" in line and key in line
    assert not (out / "zero_shot" / "results.json").exists()

    r = cli(["model/evaluate.py", "--config", str(cfg), "--zero-shot", "eval.max_missing=0.5"])
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads((out / "zero_shot" / "results.json").read_text())
    novel = res["data"]["ucf101"]["novel"]
    assert novel["rows"] == 4 and key in novel["skipped_keys"]
    assert novel["evaluated"] == 4 - novel["skipped"] == res["num_novel_samples"] < 4
    base = res["data"]["ucf101"]["base"]
    assert base["evaluated"] == res["num_base_samples"] and base["rows"] == 4


# ------------------------------------------------------------------------------------------------------ clear errors
def test_broken_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("output_dir: x\ntrain: {epochs: 2\n")
    for tool in ("model/train.py", "model/evaluate.py"):
        line = one_line_error(cli([tool, "--config", str(bad)]), str(bad), "line")
        assert "<unicode string>" not in line


def test_unusable_output_folder_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "splits", blocker / "run")
    one_line_error(cli(["model/train.py", "--config", str(cfg)]), str(blocker))


def test_average_names_the_damaged_file(tmp_path):
    ckpt = tmp_path / "checkpoints"
    for e in (1, 2):
        (ckpt / f"epoch_{e:03d}").mkdir(parents=True)
        torch.save({"w": torch.full((2,), float(e))}, ckpt / f"epoch_{e:03d}" / "model.pt")
    damaged = ckpt / "epoch_002" / "model.pt"
    damaged.write_bytes(damaged.read_bytes()[:40])
    one_line_error(cli(["model/average.py", str(tmp_path), "--from", "1"]), str(damaged))


def test_disk_full_while_checkpointing_names_the_file():
    from model.checkpoint import save_file
    with pytest.raises(OSError) as e:
        save_file({"w": torch.zeros(10_000)}, Path("/dev/full"))   # the kernel's always-full device: ENOSPC
    assert e.value.filename == "/dev/full" and e.value.errno == 28


@pytest.mark.slow
def test_disk_full_during_a_run_is_one_line_exit_2(data, tmp_path):
    """A 4 MiB tmpfs (in a private mount namespace) as output_dir: the first checkpoint does not fit."""
    probe = subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unprivileged mount namespaces are not available here (unshare -r -m)")
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    cfg = write_config(tmp_path / "c.yaml", data / "splits", mnt / "run", epochs=1, warmup_epochs=0)
    script = (f"mount -t tmpfs -o size=4m tmpfs {mnt} && exec {sys.executable} model/train.py --config {cfg} "
              f"--no-eval")
    r = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], cwd=REPO, env=ENV, capture_output=True,
                       text=True, timeout=300)
    line = one_line_error(r, str(mnt / "run" / "checkpoints"), "no space left on device")
    assert "unexpected pos" not in line


def test_launch_mixed_precision_must_agree_with_the_config(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "splits", tmp_path / "run")   # mixed_precision: "no"
    r = cli(["model/train.py", "--config", str(cfg)], env={**ENV, "ACCELERATE_MIXED_PRECISION": "bf16"})
    one_line_error(r, "--mixed_precision no", "train.mixed_precision")


# ------------------------------------------------------------------------------- 2 CPU processes: FSDP, kill, resume
def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_launch_configured_fsdp_must_agree_with_the_config(tmp_path):
    """`accelerate launch --use_fsdp` (or `accelerate config` with FSDP) while the YAML says DDP: refused, naming
    both (before this, such a run saved one rank's optimiser shard as if it were the full state)."""
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "splits", tmp_path / "run")   # train.distributed: ddp
    r = cli(["model/train.py", "--config", str(cfg)], env={**ENV, "ACCELERATE_USE_FSDP": "true"})
    one_line_error(r, "configured for FSDP", "train.distributed='ddp'")


def _kill_launcher_at_first_resume_point(args: list[str], out: Path) -> tuple[list[int], int]:
    """Start `accelerate launch` of 2 CPU processes on `args` and SIGKILL the launcher alone as soon as the run's
    first resume point (`out/checkpoints/latest.json`) is written: the ranks alive just before, and that resume
    point's step (the 6-step run must not have finished)."""
    proc = subprocess.Popen(two_process_launcher() + args, cwd=REPO, env={**ENV, "ACCELERATE_USE_CPU": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = out / "checkpoints" / "latest.json"
    deadline = time.time() + 400
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    ranks = [c for c in _children(proc.pid) if _alive(c)]
    proc.send_signal(signal.SIGKILL)              # the launcher alone
    proc.wait()
    killed_at = json.loads(pointer.read_text())["global_step"]
    assert killed_at < 6, "the run finished before it could be killed"
    return ranks, killed_at


def _killed_run_config(tmp_path: Path, data: Path, reference: Path) -> tuple[list[str], Path]:
    """The command of the reference run's training (same settings, another output_dir) and that output_dir."""
    out = tmp_path / "killed"
    ref = json.loads((reference.parent / "run.yaml").read_text())
    cfg = write_tiny_config(tmp_path / "k.yaml", data / "splits", out, eval_batch=6, train=ref["train"])
    return ["model/train.py", "--config", str(cfg), "--no-eval"], out


@pytest.mark.slow
def test_ranks_die_with_a_killed_launcher_and_the_run_resumes_exactly(data, ddp_run, tmp_path):
    """2 CPU processes under `accelerate launch`; SIGKILL of the launcher alone (what `kill -9 PID` or the OOM
    killer does) takes both ranks with it; the same command then resumes to the uninterrupted run's losses (the
    session's `ddp_run`: 6 steps over 2 epochs, a resume point every 2 steps, so the kill lands mid-epoch).
    Slow (about 25 s on 2 cores beside another test worker, more on a loaded machine or when it first asks for
    `ddp_run`): two launches of 2 processes."""
    args, out = _killed_run_config(tmp_path, data, ddp_run)
    ranks, killed_at = _kill_launcher_at_first_resume_point(args, out)
    assert len(ranks) == 2, ranks
    deadline = time.time() + 30
    while any(_alive(p) for p in ranks) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in ranks), "ranks outlived their launcher"

    r = launch_two_processes(args)   # rank 0 takes over the dead run's lock
    assert r.returncode == 0, r.stderr[-5000:]
    assert "resumed from" in r.stderr and "taking over the lock of a run that is gone" in r.stderr
    a, b = _records(ddp_run), _records(out)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for s in a:
        assert b[s]["loss"] == a[s]["loss"], (s, killed_at)


@pytest.mark.slow
def test_fsdp_run_killed_resumes_exactly_and_saves_the_full_optimiser_state(data, fsdp_run, tmp_path):
    """FSDP on 2 CPU processes (torch FSDP over gloo, which frostline sets up itself where accelerate runs DDP):
    every resume state holds the whole optimiser state (one full-size moment per trainable parameter, not one
    rank's shard); SIGKILL of the launcher right after the first resume point, then the same command, ends with
    the uninterrupted FSDP run's losses (the session's `fsdp_run`).
    Slow (about 20 s on 2 cores beside another test worker, minutes on a loaded machine; more for the test that
    first asks for `fsdp_run`, which trains it): two launches of 2 processes that each import torch and DALI, and
    4 FSDP checkpoints gathered over gloo per run."""
    assert json.loads((fsdp_run.parent / "run.yaml").read_text())["train"]["distributed"] == "fsdp"
    state = torch.load(fsdp_run / "checkpoints" / "epoch_002" / "state.pt", weights_only=True)
    model, optim = state["model"], state["optimizer"]
    trainable = [n for g in optim["param_groups"] for n in g["params"]]
    assert len(trainable) == len(set(trainable)) == len(optim["state"]) > 0
    assert set(trainable) == {n for n in model if not n.startswith("student.clip.") or n in trainable}
    for name in trainable:
        for moment in ("exp_avg", "exp_avg_sq"):
            assert optim["state"][name][moment].shape == model[name].shape, (name, moment)
    assert sum(model[n].numel() for n in trainable) > 1_000_000  # the tiny student: millions of values, not a shard
    decayed = optim["param_groups"][0]
    assert decayed["weight_decay"] > 0 and all(model[n].ndim >= 2 for n in decayed["params"])

    args, out = _killed_run_config(tmp_path, data, fsdp_run)
    _, killed_at = _kill_launcher_at_first_resume_point(args, out)   # its ranks die with it

    r = launch_two_processes(args)
    assert r.returncode == 0, r.stderr[-5000:]
    assert "resumed from" in r.stderr
    a, b = _records(fsdp_run), _records(out)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for s in a:
        assert b[s]["loss"] == pytest.approx(a[s]["loss"], rel=1e-5), (s, killed_at)
    wa = torch.load(fsdp_run / "checkpoints" / "epoch_002" / "state.pt", weights_only=True)["model"]
    wb = torch.load(out / "checkpoints" / "epoch_002" / "state.pt", weights_only=True)["model"]
    for k in trainable:
        assert torch.linalg.vector_norm(wb[k] - wa[k]) <= 1e-5 * torch.linalg.vector_norm(wa[k]) + 1e-8, k
