"""What a conversion takes from the cluster scheduler it runs under: its part, its CPUs, and its stop signal.

- `scheduler_part(env)`: `--part auto`. The part I/N of this task, from the scheduler's own variables:
    * a Slurm array task: `SLURM_ARRAY_TASK_ID` within the array `SLURM_ARRAY_TASK_MIN`..`_MAX` (step
      `SLURM_ARRAY_TASK_STEP`, `SLURM_ARRAY_TASK_COUNT` tasks), so `--array=0-3` and `--array=1-4` both give
      parts 1/4..4/4. A task resubmitted on its own (`sbatch --array=1 ...`) is an array of one, which Slurm
      describes as MIN=MAX=1, COUNT=1; it names the conversion's whole array in `FROSTLINE_ARRAY` (e.g.
      `FROSTLINE_ARRAY=0-3`), which then replaces the submission's range. Without it an array of one is refused.
    * a Kubernetes indexed Job: `JOB_COMPLETION_INDEX` (0-based), with the number of parts in `FROSTLINE_PARTS`,
      which the Job spec sets to its `completions` (Kubernetes does not pass that count to the pod).
  Missing or inconsistent variables raise `SchedulerError` naming them, so a task never converts a part nobody
  asked for.
- `usable_cpus()`: the CPUs this process may run on (`os.sched_getaffinity`: what Slurm's task/affinity or
  task/cgroup, `taskset` or a cpuset gave it), not the machine's count. The default for workers and merge threads.
- `stop_on_signals()`: while it is active, SIGTERM (`scancel`, a time limit, preemption, `kubectl delete`) and
  SIGINT raise `Stopped` in the main thread, so every `finally` and `with` on the way out runs: the part's lock
  is released and its scratch files removed before the process exits (with `Stopped.status`, 128 + the signal).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import threading


SLURM_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_COUNT")
ARRAY_VAR = "FROSTLINE_ARRAY"       # the conversion's whole Slurm array, for tasks resubmitted on their own
PARTS_VAR = "FROSTLINE_PARTS"       # the number of parts of a Kubernetes indexed Job (its `completions`)


class SchedulerError(ValueError):
    """`--part auto` cannot tell this task's part: the message names the variables that are missing or disagree."""


def _integer(env, name: str) -> int:
    text = env.get(name)
    if text is None:
        raise SchedulerError(f"--part auto: {name} is not set")
    try:
        return int(text)
    except ValueError:
        raise SchedulerError(f"--part auto: {name} must be an integer, got {text!r}") from None


def _array_range(text: str) -> tuple[int, int, int]:
    """'0-3' / '1-8:1' / '5' -> (first, last, step), as `sbatch --array` writes a range."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*(?::\s*(\d+)\s*)?)?", text)
    if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))) or m.group(3) == "0":
        raise SchedulerError(f"--part auto: {ARRAY_VAR} must be the conversion's array range, like 0-3 "
                             f"(as given to sbatch --array), got {text!r}")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) is not None else first
    return first, last, int(m.group(3) or 1)


def _slurm_part(env) -> tuple[int, int]:
    task = _integer(env, "SLURM_ARRAY_TASK_ID")
    if env.get(ARRAY_VAR):
        first, last, step = _array_range(env[ARRAY_VAR])
        where = f"{ARRAY_VAR}={env[ARRAY_VAR]}"
    else:
        first, last = _integer(env, "SLURM_ARRAY_TASK_MIN"), _integer(env, "SLURM_ARRAY_TASK_MAX")
        step = _integer(env, "SLURM_ARRAY_TASK_STEP") if env.get("SLURM_ARRAY_TASK_STEP") else 1
        count = _integer(env, "SLURM_ARRAY_TASK_COUNT")
        where = f"sbatch --array={first}-{last}" + (f":{step}" if step != 1 else "")
        if step < 1 or last < first or (last - first) % step or (last - first) // step + 1 != count:
            raise SchedulerError(f"--part auto: the Slurm array is not one evenly spaced range (SLURM_ARRAY_TASK_MIN="
                                 f"{first}, _MAX={last}, _STEP={step}, _COUNT={count}); submit it as "
                                 f"--array=0-{count - 1} (a range, without commas)")
        if count == 1:
            raise SchedulerError(f"--part auto: array task {task} is an array of one task (sbatch --array={task}); to "
                                 f"resubmit a task of a bigger array, set {ARRAY_VAR} to that array (sbatch "
                                 f"--array={task} --export=ALL,{ARRAY_VAR}=0-N ...); to convert in one part, give "
                                 "--part 1/1")
    if not first <= task <= last or (task - first) % step:
        raise SchedulerError(f"--part auto: array task {task} is not in the conversion's array ({where}); a task "
                             f"resubmitted on its own needs {ARRAY_VAR} set to the whole array, e.g. "
                             f"sbatch --array={task} --export=ALL,{ARRAY_VAR}=0-N ...")
    return (task - first) // step + 1, (last - first) // step + 1


def part_source(env=None) -> str:
    """The variable `scheduler_part` took this task's index from, with its value (for the job's log)."""
    env = os.environ if env is None else env
    name = "SLURM_ARRAY_TASK_ID" if env.get("SLURM_ARRAY_TASK_ID") is not None else "JOB_COMPLETION_INDEX"
    return f"{name}={env.get(name)}"


def _kubernetes_part(env) -> tuple[int, int]:
    index = _integer(env, "JOB_COMPLETION_INDEX")
    if env.get(PARTS_VAR) is None:
        raise SchedulerError(f"--part auto: a Kubernetes indexed Job (JOB_COMPLETION_INDEX={index}) must set "
                             f"{PARTS_VAR} to its completions count in the container's env")
    parts = _integer(env, PARTS_VAR)
    if not 0 <= index < parts:
        raise SchedulerError(f"--part auto: JOB_COMPLETION_INDEX={index} is not below {PARTS_VAR}={parts}; set "
                             f"{PARTS_VAR} to the Job's spec.completions")
    return index + 1, parts


def scheduler_part(env=None) -> tuple[int, int]:
    """(I, N) of this task from the scheduler's variables (see the module docstring); `env` defaults to os.environ."""
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_TASK_ID") is not None:
        return _slurm_part(env)
    if env.get("JOB_COMPLETION_INDEX") is not None:
        return _kubernetes_part(env)
    if env.get("SLURM_JOB_ID") is not None:
        raise SchedulerError(f"--part auto: Slurm job {env['SLURM_JOB_ID']} is not an array task; submit it with "
                           "sbatch --array=0-N (N+1 parts), or give --part I/N")
    raise SchedulerError("--part auto needs a Slurm array task (SLURM_ARRAY_TASK_ID) or a Kubernetes indexed Job "
                       "(JOB_COMPLETION_INDEX); neither is set: give --part I/N")


def usable_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):   # not Linux
        return os.cpu_count() or 1


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived; a BaseException, like KeyboardInterrupt, so that no `except Exception` keeps it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.status = 128 + signum    # what a shell reports for a process the signal killed: 143, 130


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT)):
    """Turn `signals` into `Stopped` in the main thread while the block runs; the old handlers come back after.
    Elsewhere than in the main thread (where Python cannot set handlers) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        for s in signals:        # a second signal during the clean-up must not interrupt it
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    old = {s: signal.signal(s, stop) for s in signals}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
