"""The one retry mechanism (`shards.storage.retry`): transient storage faults are waited out, others raised at once,
and a fault that outlasts the budget stops with an error that names the URL and the cause."""
from __future__ import annotations

import socket
import time

import pytest

from shards.storage.retry import StorageError, budget_from_env, is_transient, retry


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]          # closed again: connecting is refused


def _connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_a_refused_connection_is_retried_until_it_passes():
    port = _refused_port()
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            _connect(port)                 # a real ConnectionRefusedError from the kernel
        return "data"

    assert retry(flaky, what="read s3://b/k", budget_s=30) == "data"
    assert len(calls) == 3 and calls[2] - calls[0] > 0.1          # it waited between attempts


def test_the_budget_ends_in_an_error_naming_the_url_and_cause():
    port = _refused_port()
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"read s3://bucket/train-000001.tar bytes 0-99: .*ConnectionRefused"):
        retry(lambda: _connect(port), what="read s3://bucket/train-000001.tar bytes 0-99", budget_s=0.5)
    assert time.monotonic() - start < 5


def test_permanent_errors_are_not_retried():
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("s3://b/none.tar")

    with pytest.raises(FileNotFoundError):
        retry(missing, what="read s3://b/none.tar", budget_s=30)
    assert calls == [1]
    assert not is_transient(ValueError("bad header")) and not is_transient(PermissionError("Forbidden"))
    wrapped = OSError("read failed")
    wrapped.__cause__ = TimeoutError("timed out")
    assert is_transient(wrapped)                                 # the chain of causes is searched


def test_budget_from_env(monkeypatch):
    monkeypatch.setenv("FROSTLINE_IO_RETRY_S", "12.5")
    assert budget_from_env() == 12.5
    monkeypatch.setenv("FROSTLINE_IO_RETRY_S", "soon")
    with pytest.raises(ValueError, match="FROSTLINE_IO_RETRY_S"):
        budget_from_env()
    monkeypatch.delenv("FROSTLINE_IO_RETRY_S")
    assert budget_from_env() == 600
