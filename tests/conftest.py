"""Shared fixtures: a real S3 server (moto_server on loopback) for the tests that read or write s3://."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from local_s3 import start_moto_server

REPO = Path(__file__).resolve().parents[1]


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

    return make_ucf101(str(tmp_path_factory.mktemp("ucf101_src")), num_classes=4, groups=4, clips=1)


@pytest.fixture(scope="session")
def ucf101_shards(synthetic_ucf101, tmp_path_factory):
    """`synthetic_ucf101` converted with the defaults into small shards: (out folder, ConvertSummary)."""
    from shards.convert import convert_dataset

    out = str(tmp_path_factory.mktemp("ucf101_shards"))
    summary = convert_dataset("ucf101", synthetic_ucf101.root, out, workers=1, shard_size="24kB", progress=False)
    return out, summary


@pytest.fixture(scope="session")
def learnable_ucf101_shards(tmp_path_factory):
    """A learnable UCF101-layout dataset (8 visually distinct classes, 8 groups) converted to shards: out folder."""
    from shards.convert import convert_dataset
    from shards.generated.synthetic import make_ucf101

    src = str(tmp_path_factory.mktemp("learnable_src"))
    make_ucf101(src, num_classes=8, groups=8, clips=1, learnable=True, quirks=False, num_frames=40)
    out = str(tmp_path_factory.mktemp("learnable_shards"))
    convert_dataset("ucf101", src, out, workers=1, shard_size="64kB", progress=False)
    return out


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
