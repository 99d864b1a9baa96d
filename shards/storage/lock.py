"""One live run per output: a lock file (local) or lock object (s3://) recording who holds it. The one lock of
the project: make_shards holds one per part (and one for the merge), training and evaluation one per output_dir.

    with RunLock(join(out, "_work/part-1-of-1.lock"), what=out):
        ...   # a second live run on the same lock gets `LockHeld`, a message naming this one
    with output_lock(cfg.output_dir):   # OUTPUT_DIR/run.lock: a training or evaluation output folder, local or s3://
        ...

The lock holds JSON: `host`, `pid`, `pid_start` (the process's start time, against PID reuse), `started`
(UTC, ISO 8601), `heartbeat` (Unix time, refreshed every `heartbeat_s` by a daemon thread), `command` and
a random `token`. It is created exclusively and whole (`shards.storage.create_bytes`: a complete file
hard-linked into place on local disk, a conditional PUT with `If-None-Match: *` on S3), so two runs that start
together cannot both get it, and a reader never sees a half-written lock. A lock that is not a JSON object was
damaged outside frostline: `DamagedLock` names it and asks for it to be removed by hand rather than guessing.

A lock whose holder is gone is *stale* and is taken over (with a warning):
- same host (the hostname matches): the PID is dead, or belongs to a process with another start time
  (containers that share a hostname and an output folder but not a PID namespace must get distinct
  hostnames, or they would see each other's live runs as dead);
- another host: the heartbeat is older than `stale_after_s` (default 300 s, ten missed heartbeats). This
  needs the hosts' clocks to agree within that margin. A holder that is alive but frozen for longer (a
  paused VM) loses its lock; the settings check and the per-shard fragments then keep the store
  consistent, because both runs would write the same bytes to the same names.
The takeover removes the stale lock and creates a new one exclusively; if two runs take over at the same
moment, the exclusive create lets only one of them win.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

from shards import storage
from shards.cli import Failure
from .orphans import pid_alive, process_start

log = logging.getLogger(__name__)


class LockHeld(Failure):
    """Another live run holds the lock; the message names it (host, PID, start time) and the lock's URL."""


class DamagedLock(Failure):
    """The lock file holds something other than a lock record (not a JSON object); the message names it."""


LOCK_NAME = "run.lock"


def output_lock(folder: str, **kw) -> "RunLock":
    """The lock of a training or evaluation output folder, local or s3://: `FOLDER/run.lock`."""
    return RunLock(storage.join(folder, LOCK_NAME), what=str(folder), **kw)


class RunLock:
    def __init__(self, url: str, *, what: str | None = None, heartbeat_s: float = 30.0,
                 stale_after_s: float = 300.0):
        self.url = url
        self.what = what or url
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.token: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.took_over: dict | None = None   # the stale holder this run replaced, if any

    # ------------------------------------------------------------------ holder records

    def _record(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "heartbeat": time.time(),
                "command": " ".join(sys.argv)[:500], "token": self.token}

    def holder(self) -> dict | None:
        """The current holder's record, or None when there is no lock (or it vanished while reading).
        Raises `DamagedLock` when the lock holds anything but a JSON object."""
        try:
            raw = storage.read_bytes(self.url)
        except FileNotFoundError:
            return None
        try:
            held = json.loads(raw)
        except (ValueError, RecursionError):   # not UTF-8, not JSON
            held = None
        if not isinstance(held, dict):
            raise DamagedLock(f"{self.url}: damaged run lock (not a JSON object: {raw[:60]!r}); if no run is using "
                              f"{self.what}, remove the lock and start again")
        return held

    def is_stale(self, held: dict) -> bool:
        try:
            if held.get("host") == socket.gethostname():
                pid = int(held.get("pid", -1))
                return pid <= 0 or not pid_alive(pid, held.get("pid_start"))
            return time.time() - float(held.get("heartbeat", 0)) > self.stale_after_s
        except (TypeError, ValueError, OverflowError):
            raise DamagedLock(f"{self.url}: damaged run lock (a pid or heartbeat that is no number: "
                              f"{json.dumps(held)[:80]}); if no run is using {self.what}, remove the lock and start "
                              "again") from None

    @staticmethod
    def describe(held: dict) -> str:
        return f"host {held.get('host')}, pid {held.get('pid')}, started {held.get('started')}"

    # ------------------------------------------------------------------ acquire / release

    def acquire(self, wait_s: float = 0.0) -> "RunLock":
        """Take the lock; if a live run holds it, wait up to `wait_s` seconds for it, then raise `LockHeld`."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self._acquire()
            except LockHeld:
                self.token = None
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
            except BaseException as stop:   # a signal (shards.cluster.Stopped, KeyboardInterrupt) while taking it
                if not isinstance(stop, Exception) and self.token is not None:
                    self.release()  # removes the lock only if this run had created it
                raise

    def _acquire(self) -> "RunLock":
        self.token = uuid.uuid4().hex
        for _ in range(5):
            try:
                storage.create_bytes(self.url, json.dumps(self._record(), indent=1).encode())
                break
            except FileExistsError:
                held = self.holder()
                if held is None:
                    continue   # released between our create and our read: try again
                if held.get("token") == self.token:
                    break      # our own create, retried after its answer was lost: we hold it
                if not self.is_stale(held):
                    raise LockHeld(f"{self.what} is in use by another run ({self.describe(held)}; lock {self.url}); "
                                   "one live run per output: wait for it to finish, or give this run another "
                                   "output") from None
                log.warning("%s: taking over the lock of a run that is gone (%s; lock %s)", self.what,
                            self.describe(held), self.url)
                self.took_over = held
                storage.remove(self.url)
        else:
            raise LockHeld(f"{self.what}: could not take the lock {self.url} (other runs keep taking it)")
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="frostline-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                held = self.holder()
                if held is None or held.get("token") != self.token:
                    log.warning("%s: the lock %s was taken by another run (%s)", self.what, self.url,
                                self.describe(held or {}))
                    return
                held["heartbeat"] = time.time()
                storage.write_bytes(self.url, json.dumps(held, indent=1).encode())
            except DamagedLock as e:
                log.warning("%s", e)
                return
            except Exception as e:  # noqa: BLE001 - a missed heartbeat is not fatal; the next one retries
                log.debug("lock heartbeat failed: %s", e)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            held = self.holder()
        except DamagedLock as e:   # overwritten while held: not ours any more, leave it for a person to see
            log.warning("%s", e)
            held = None
        if held is not None and held.get("token") == self.token:
            storage.remove(self.url)
        self.token = None

    def __enter__(self) -> "RunLock":
        return self if self.token else self.acquire()   # `with RunLock(...).acquire(wait_s=...)` works too

    def __exit__(self, *exc) -> None:
        self.release()
