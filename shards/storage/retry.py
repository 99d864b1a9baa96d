"""One way to survive storage faults: retry transient errors with backoff for a time budget, then stop with an
error naming the URL and the cause.

Object storage fails in ways that pass: a server restarting (connection refused), a hung request (read timeout),
503 SlowDown, a reset connection. Those are retried, with exponential backoff capped at `MAX_SLEEP_S`, until the
budget is spent (default 10 minutes; `FROSTLINE_IO_RETRY_S` or the caller's `budget_s` changes it). Errors that
retrying cannot fix (a missing object, denied access, a bug) are raised at once, unchanged. A fault that outlasts
the budget becomes a `StorageError` whose message names what was being done (`what`: the URL) and the last cause.

Readers and writers share this module, so every tool waits out an outage the same way:

    data = retry(lambda: fs.cat_file(path, start, end), what=f"read {url} bytes {start}-{end}")
"""
from __future__ import annotations

import errno
import logging
import os
import random
import socket
import time
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

ENV = "FROSTLINE_IO_RETRY_S"
DEFAULT_BUDGET_S = 600.0
FIRST_SLEEP_S = 0.2
MAX_SLEEP_S = 10.0

T = TypeVar("T")

# errno values of faults that pass: the peer restarting, a dropped or timed-out connection
_TRANSIENT_ERRNO = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE,
                    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN, errno.EBUSY}
# class names (botocore, aiohttp, urllib3, fsspec) of transport faults; matched by name so no client is imported
_TRANSIENT_NAMES = {
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ProxyConnectionError", "ResponseStreamingError", "IncompleteReadError", "HTTPClientError",
    "ClientConnectorError", "ClientOSError", "ServerDisconnectedError", "ServerTimeoutError", "ClientPayloadError",
    "ClientConnectionError", "ProtocolError", "IncompleteRead", "FSTimeoutError", "ResponseParserError",
    "NewConnectionError", "RemoteDisconnected",
}
# S3 error codes / HTTP statuses that mean "try again"
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed",
                    "Throttling", "ThrottlingException", "503", "500", "502", "504"}


class StorageError(OSError):
    """Storage stayed unreachable for the whole retry budget (or failed for good); the message names the URL."""


def budget_from_env(default: float = DEFAULT_BUDGET_S) -> float:
    """The retry budget in seconds: `FROSTLINE_IO_RETRY_S` if set, else `default`."""
    raw = os.environ.get(ENV)
    if raw is None or raw.strip() == "":
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: expected a number of seconds") from None
    if value < 0:
        raise ValueError(f"{ENV}={raw!r}: must be >= 0")
    return value


def _one_is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
        return True
    for cls in type(exc).__mro__:
        if cls.__name__ in _TRANSIENT_NAMES:
            return True
    response = getattr(exc, "response", None)        # botocore ClientError
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _TRANSIENT_CODES or (isinstance(status, int) and (status >= 500 or status == 429)):
            return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNO:
        return True
    return False


def is_transient(exc: BaseException) -> bool:
    """True when `exc` (or an error it was raised from) is a storage fault that may pass if retried."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, StorageError):
            return False                                   # a budget already spent is not retried again
        if _one_is_transient(exc):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def retry(fn: Callable[[], T], *, what: str, budget_s: float | None = None) -> T:
    """`fn()`, retried with backoff while it raises transient storage errors, for up to `budget_s` seconds
    (None: `budget_from_env()`). Raises `StorageError(what: cause)` when the budget is spent; other errors pass
    through at once."""
    budget = budget_from_env() if budget_s is None else float(budget_s)
    start = time.monotonic()
    attempt, last_log = 0, -1e9
    while True:
        try:
            return fn()
        except Exception as exc:  # classified below; non-transient errors re-raised unchanged
            if not is_transient(exc):
                raise
            elapsed = time.monotonic() - start
            attempt += 1
            if elapsed >= budget:
                raise StorageError(f"{what}: storage unreachable for {elapsed:.0f} s ({attempt} attempts, "
                                   f"retry budget {budget:.0f} s, {ENV}): {_cause(exc)}") from exc
            if elapsed - last_log >= 30 or attempt == 1:
                log.warning("%s: %s; retrying for up to %.0f s more", what, _cause(exc), budget - elapsed)
                last_log = elapsed
            sleep = min(MAX_SLEEP_S, FIRST_SLEEP_S * 2 ** min(attempt - 1, 16)) * (0.5 + random.random() / 2)
            time.sleep(max(0.0, min(sleep, budget - elapsed)))
