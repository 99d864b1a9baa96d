"""Storage faults during an epoch, on a real S3 server on loopback (moto, `tools/s3_server.py`) that the test
kills, restarts and pauses: the loader waits them out and ends bit-identical to an uninterrupted run, with no
sample counted bad; an outage longer than the retry budget stops it with an error naming the URL."""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from local_s3 import free_port

from pipeline.loader import LoaderConfig, build_loader
from shards.storage.retry import StorageError

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(batch_size=2, num_frames=4, frame_stride=4, crop_size=32, short_side_range=(32, 40), num_threads=1,
             prefetch=1, io_threads=2, seed=4)


class Server:
    """`tools/s3_server.py` in its own process, filled with a store before it listens."""

    def __init__(self, port: int, fill: str):
        self.port, self.fill, self.proc = port, fill, None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "s3_server.py"), "--port", str(self.port),
                                      "--fill", self.fill], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), line

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop_for(self, seconds: float) -> threading.Thread:
        """SIGSTOP now, SIGCONT after `seconds` (in a thread)."""
        self.proc.send_signal(signal.SIGSTOP)

        def wake():
            time.sleep(seconds)
            self.proc.send_signal(signal.SIGCONT)
        t = threading.Thread(target=wake)
        t.start()
        return t

    def restart_after(self, seconds: float) -> threading.Thread:
        def later():
            time.sleep(seconds)
            self.start()
        t = threading.Thread(target=later)
        t.start()
        return t


@pytest.fixture
def s3_store(ucf101_shards, monkeypatch):
    """The session's small shard store served by a private S3 server: (Server, s3 URL of the store)."""
    out, _ = ucf101_shards
    port = free_port()
    for k, v in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()       # cached clients would still point at an earlier test's server
    server = Server(port, f"faults/store={out}")
    server.start()
    yield server, "s3://faults/store"
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGCONT)
        server.kill()
    s3fs.S3FileSystem.clear_instance_cache()


def _run(url: str, cfg: LoaderConfig, after_first=None) -> tuple[list, dict]:
    loader = build_loader(url, cfg)
    out = []
    for i, b in enumerate(loader):
        out.append((b.keys, b.clips.clone(), b.labels.clone()))
        if i == 0 and after_first is not None:
            after_first()
    stats = dict(loader.stats)
    loader.close()
    return out, stats


def _same(a: list, b: list) -> None:
    assert len(a) == len(b) > 3
    for (k1, c1, l1), (k2, c2, l2) in zip(a, b):
        assert k1 == k2 and torch.equal(c1, c2) and torch.equal(l1, l2)


def _retried(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "shards.storage.retry"]


@pytest.mark.parametrize("shuffle", ["sample", "interleave"])
def test_server_killed_and_restarted_mid_epoch(s3_store, caplog, shuffle):
    """Per-sample ranged reads ("sample") and whole-shard reads ("interleave") both wait out the outage."""
    server, url = s3_store
    cfg = LoaderConfig(**SMALL, shuffle=shuffle, io_retry_s=120, io_timeout_s=5, read_chunk_mb=1,
                       read_buffer_mb=0 if shuffle == "sample" else 512)
    want, _ = _run(url, cfg)
    threads = []

    def outage():
        server.kill()
        threads.append(server.restart_after(4))

    with caplog.at_level(logging.WARNING):
        got, stats = _run(url, cfg, after_first=outage)
    for t in threads:
        t.join()
    _same(got, want)
    assert stats["decode_errors"] == 0 and stats["skipped_keys"] == []
    assert _retried(caplog), "the outage never hit a read"
    assert "s3://faults/store/" in _retried(caplog)[0]                   # the warning names the URL


def test_server_paused_longer_than_a_request_timeout(s3_store, caplog):
    server, url = s3_store
    cfg = LoaderConfig(**SMALL, shuffle="sample", io_retry_s=120, io_timeout_s=1, read_buffer_mb=0)
    want, _ = _run(url, cfg)
    threads = []
    with caplog.at_level(logging.WARNING):
        got, stats = _run(url, cfg, after_first=lambda: threads.append(server.stop_for(4)))
    for t in threads:
        t.join()
    _same(got, want)
    assert stats["decode_errors"] == 0 and stats["skipped_keys"] == []
    assert any("Timeout" in m or "timeout" in m for m in _retried(caplog)), _retried(caplog)


def test_server_gone_for_good_stops_with_the_url_and_marks_nothing_bad(s3_store):
    server, url = s3_store
    cfg = LoaderConfig(**SMALL, shuffle="sample", io_retry_s=2, io_timeout_s=1, read_buffer_mb=0)
    loader = build_loader(url, cfg)
    it = iter(loader)
    next(it)
    server.kill()
    with pytest.raises(StorageError, match=r"read s3://faults/store/\S+\.tar bytes \d+-\d+: storage unreachable"):
        for _ in it:
            pass
    assert loader.stats["decode_errors"] == 0 and loader.state_dict()["skipped_keys"] == []


def _server_counts(server: Server, reset: bool = False) -> dict:
    import json
    import urllib.request

    path = "/_frostline/reset" if reset else "/_frostline/requests"
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", method="POST" if reset else "GET")
    return json.loads(urllib.request.urlopen(req).read())


def test_a_dense_epoch_on_s3_costs_one_request_per_shard_and_no_head(s3_store):
    """Default settings on a dense split: the interleaved order, each shard read in one ranged GET per epoch
    (counted at the server), set-up one listing; the previous read path sent a HEAD per sample per graph build."""
    server, url = s3_store
    _server_counts(server, reset=True)
    loader = build_loader(url, LoaderConfig(**SMALL))
    setup = _server_counts(server, reset=True)
    assert loader.shuffle == "interleave"
    # opening the manifest and classes files (a HEAD and a GET each, by the Parquet reader) and one listing
    assert sum(setup.values()) <= 8 < len(loader.table.shards) + len(loader.table), setup
    for epoch in range(2):
        loader.set_epoch(epoch)
        n = sum(1 for _ in loader)
        counts = _server_counts(server, reset=True)
        assert n == len(loader) and counts.get("HEAD", 0) == 0, counts
        assert 0 < counts["GET"] <= len(loader.table.shards) < len(loader.table)
    assert loader.stats["decode_errors"] == 0
