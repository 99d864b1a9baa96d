"""What a `kill -9` leaves behind, and how the next run gets rid of it: child processes and temp folders.

- `die_with_parent(parent_pid)`: called first thing in a worker process (a `ProcessPoolExecutor`
  initializer). It asks Linux to SIGKILL the worker when its parent dies (`prctl(PR_SET_PDEATHSIG)`), and
  exits at once if the parent is already gone (the parent may die between the fork and the prctl call).
  Once the workers are gone, multiprocessing's resource tracker sees its pipe close and exits too: the
  workers held the last copies of that pipe. Elsewhere than Linux it does nothing.
- `owned_tempdir(prefix)` / `sweep_tempdirs(prefix)`: temp folders named `{prefix}{pid}-...`; the sweep
  removes those whose process is dead on this host, so a killed run's folder is cleaned by the next run.
- `pid_alive(pid, start=None)` and `process_start(pid)`: a PID is only the same process if its start time
  (`/proc/PID/stat`, field 22) matches, which guards against PID reuse. Used by `shards.storage.lock`.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import signal
import sys
import tempfile

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process receive SIGKILL when its parent dies (Linux); exit now if it is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), or None when unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether `pid` is a live process on this host (and, if `start` is given, the same one that started then)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    if start is not None:
        now = process_start(int(pid))
        if now is not None and now != start:
            return False   # the PID was reused by another process
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return False   # a zombie: dead, waiting for its parent to reap it
    return True


def owned_tempdir(prefix: str) -> tempfile.TemporaryDirectory:
    """A temp folder whose name carries this process's PID, so `sweep_tempdirs` can tell when it is orphaned."""
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-")


def sweep_tempdirs(prefix: str) -> list[str]:
    """Remove `{prefix}{pid}-*` folders in the temp directory whose process is dead; returns what it removed."""
    removed = []
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{glob.escape(prefix)}*")):
        rest = os.path.basename(path)[len(prefix):]
        pid = rest.split("-", 1)[0]
        if not pid.isdigit() or pid_alive(int(pid)) or not os.path.isdir(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
