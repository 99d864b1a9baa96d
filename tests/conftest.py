"""Shared fixtures: a real S3 server (moto_server on loopback) for the tests that read or write s3://, and the
expensive artefacts many tests read: small shard stores, the training tests' dataset, and reference training runs.

The suite runs in parallel (pytest-xdist, see pyproject.toml); each worker has its own session, so a session
fixture alone would build its artefact once per worker. `built_once` builds an artefact once per test run: the
first worker to ask builds it into a folder beside the workers' temp folders while holding a file lock, the
others wait for it and read the same folder. Artefacts are read-only for the tests (a test that changes one
copies it first).
"""
from __future__ import annotations

import fcntl
import os
import pickle
import shutil
from pathlib import Path

import pytest
from local_s3 import start_moto_server

REPO = Path(__file__).resolve().parents[1]


def built_once(tmp_path_factory, name: str, build):
    """`build(folder)` run once per test run, whichever worker asks first; returns what it returned (pickled
    beside the folder for the other workers). Without xdist the folder is in this run's temp folder."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base   # xdist: the run's folder, shared
    folder, done = root / f"built-{name}", root / f"built-{name}.pickle"
    with open(root / f"built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)            # released when the file closes, also if this process dies
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            value = build(folder)
            tmp = done.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(value))
            tmp.replace(done)
    return pickle.loads(done.read_bytes())


@pytest.fixture(scope="session")
def s3_endpoint():
    """Start moto_server on 127.0.0.1 and point the standard AWS_* variables at it.

    Returns the endpoint URL. Buckets are created by the tests that need them (see `s3_bucket`).
    """
    proc, url = start_moto_server()
    saved = {k: os.environ.get(k) for k in (
        "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION")}
    os.environ.update({
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    })
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh, empty bucket on the test S3 server; returns its name."""
    import boto3

    name = "frostline-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=name)
    return name


# ---------------------------------------------------------------- shard store fixtures (shared by all parts)

@pytest.fixture(scope="session")
def synthetic_ucf101(tmp_path_factory):
    """A tiny UCF101-layout dataset with every quirk (see shards.generated.synthetic.make_ucf101); a `Synthetic`."""
    from shards.generated.synthetic import make_ucf101

    return built_once(tmp_path_factory, "ucf101_src",
                      lambda folder: make_ucf101(str(folder), num_classes=4, groups=4, clips=1))


@pytest.fixture(scope="session")
def ucf101_shards(synthetic_ucf101, tmp_path_factory):
    """`synthetic_ucf101` converted with the defaults into small shards: (out folder, ConvertSummary)."""
    from shards.convert import convert_dataset

    def build(folder):
        out = str(folder / "store")
        return out, convert_dataset("ucf101", synthetic_ucf101.root, out, workers=1, shard_size="24kB",
                                    progress=False)
    return built_once(tmp_path_factory, "ucf101_shards", build)


@pytest.fixture(scope="session")
def learnable_ucf101_shards(tmp_path_factory):
    """A learnable UCF101-layout dataset (8 visually distinct classes, 8 groups) converted to shards: out folder."""
    from shards.convert import convert_dataset
    from shards.generated.synthetic import make_ucf101

    def build(folder):
        make_ucf101(str(folder / "src"), num_classes=8, groups=8, clips=1, learnable=True, quirks=False,
                    num_frames=40)
        convert_dataset("ucf101", str(folder / "src"), str(folder / "store"), workers=1, shard_size="64kB",
                        progress=False)
        return str(folder / "store")
    return built_once(tmp_path_factory, "learnable_ucf101_shards", build)


# ------------------------------------------------------------------------------------ training (tests/train_data.py)

@pytest.fixture(scope="session")
def train_dataset(tmp_path_factory) -> Path:
    """4 learnable classes (2 base, 2 novel), 8 UCF groups x 1 clip: 12 training clips, 4 + 4 evaluation clips in
    one tar shard, and base-to-novel split files (`splits/`)."""
    from train_data import make_dataset

    def build(folder):
        make_dataset(folder, num_classes=4, groups=8, clips=1, frames=24, workers=1)
        return folder
    return built_once(tmp_path_factory, "train_dataset", build)


def _two_process_run(tmp_path_factory, train_dataset: Path, distributed: str) -> Path:
    from train_data import TWO_PROCESS_RUN, launch_two_processes, write_tiny_config

    def build(folder):
        out = folder / "run"
        cfg = write_tiny_config(folder / "run.yaml", train_dataset / "splits", out, eval_batch=5,
                                train={**TWO_PROCESS_RUN, "distributed": distributed})
        # DDP: trained then evaluated on both ranks; FSDP: trained only
        r = launch_two_processes(["model/train.py", "--config", str(cfg)] + (["--no-eval"] if distributed == "fsdp"
                                                                              else []))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
        (folder / "stderr.txt").write_text(r.stderr)
        return out
    return built_once(tmp_path_factory, f"{distributed}_run", build)


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory, train_dataset) -> Path:
    """`TWO_PROCESS_RUN` on `train_dataset` under `accelerate launch` with 2 CPU processes (DDP over gloo), then
    evaluated on both ranks: its output_dir (stderr.txt beside it). The uninterrupted reference of the kill tests."""
    return _two_process_run(tmp_path_factory, train_dataset, "ddp")


@pytest.fixture(scope="session")
def fsdp_run(tmp_path_factory, train_dataset) -> Path:
    """The same run sharded with FSDP (torch's, set up by frostline on CPU processes), without evaluation."""
    return _two_process_run(tmp_path_factory, train_dataset, "fsdp")


@pytest.fixture(scope="session")
def tiny_clip_file(tmp_path_factory):
    """A randomly initialised frostline-tiny CLIP (seed 0) in open_clip's checkpoint format (model.clip.export_clip)."""
    import torch

    from model.clip import build_clip, export_clip
    torch.manual_seed(0)
    model, _ = build_clip("frostline-tiny", pretrained=None)
    path = tmp_path_factory.mktemp("tiny_clip") / "tiny.pt"
    export_clip(model.state_dict(), path, "frostline-tiny")
    return path
