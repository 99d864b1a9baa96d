"""One live run per output folder.

``OUTPUT_DIR/run.lock`` records who holds the folder: host, PID, the process's start time (so a PID that the
system has since given to another process is not mistaken for the holder) and the wall-clock start. It is
created with ``O_CREAT | O_EXCL``, so of two runs starting together exactly one gets it. A second live run is
refused with a message that names the first. A lock whose holder is dead (a ``kill -9``, a power cut) is
recognised on the same host and taken over; a lock held from another host cannot be checked from here and is
refused: remove the file by hand once that run is gone. The lock goes when the run ends, normally or by an
exception.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from shards.cli import Failure

LOCK_NAME = "run.lock"
log = logging.getLogger("model.lock")


def _start_ticks(pid: int) -> int | None:
    """The process's start time since boot (clock ticks, /proc/PID/stat field 22); None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(holder: dict) -> bool:
    pid = int(holder.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's live process
        pass
    ticks = _start_ticks(pid)
    return ticks is None or holder.get("start_ticks") in (None, ticks)


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _parse(raw: str | None) -> dict | None:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def describe(holder: dict) -> str:
    if "started" not in holder:
        return "a run that died while taking the lock"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"the run started {started} on {holder.get('host', '?')} (pid {holder.get('pid', '?')})"


class RunLock:
    """``with RunLock(output_dir):`` — the folder is created if needed, then held until the block ends."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False

    def acquire(self) -> "RunLock":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise Failure(f"{self.folder}: cannot be used as the output folder: {e.strerror or e}") from e
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start_ticks": _start_ticks(os.getpid()),
              "started": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                raw = _text(self.path)
                if not raw:  # being written by a run that started a moment ago, or left empty by a kill
                    time.sleep(0.5)
                    raw = _text(self.path)
                holder = _parse(raw) or {"host": me["host"], "pid": -1}   # still empty: its writer died
                if holder.get("host") != me["host"]:
                    raise Failure(f"{self.folder} is in use by {describe(holder)}; one live run per output_dir "
                                  f"(if that run is gone, remove {self.path})")
                if _alive(holder):
                    raise Failure(f"{self.folder} is in use by {describe(holder)}; one live run per output_dir: "
                                  f"wait for it, stop it, or use another output_dir")
                self._take_over_stale(raw, holder)
                continue
            except OSError as e:
                raise Failure(f"{self.path}: cannot create the run lock: {e.strerror or e}") from e
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise Failure(f"{self.path}: could not take over the stale lock (another run is starting?)")

    def _take_over_stale(self, raw: str | None, holder: dict) -> None:
        """Move the dead holder's lock aside (atomically, so two runs cannot both take it over), then retry."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        if _text(aside) != raw:  # another run replaced it meanwhile: put theirs back
            os.replace(aside, self.path)
            return
        aside.unlink(missing_ok=True)
        log.warning(f"took over {self.path}: {describe(holder)} is no longer running")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
