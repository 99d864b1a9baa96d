"""tools/slurm/make_shards.sbatch on a real Slurm: a one-node cluster on loopback (tools/slurm/local_cluster.sh:
Debian's slurm-wlm and munge, SlurmUser=root, select/cons_tres, proctrack/linuxproc, task/none).

Skipped, saying why, where Slurm is not installed (`.ci/run` installs it with apt-get) or the test does not run as root.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from shards_checks import check_store

from shards.convert import convert_dataset
from shards.generated.synthetic import make_ucf101
from shards.manifest import read_manifest, read_rejects

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(REPO, "tools", "slurm", "local_cluster.sh")
SBATCH = os.path.join(REPO, "tools", "slurm", "make_shards.sbatch")
SHARD_SIZE = "100kB"


def _missing() -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    for cmd in ("sbatch", "scancel", "squeue", "slurmctld", "slurmd", "munged"):
        if shutil.which(cmd, path=path) is None:
            return (f"Slurm is not installed here ({cmd} not found): apt-get install -y slurm-wlm munge "
                    "(.ci/run does it where it can)")
    if os.geteuid() != 0:
        return "the one-node Slurm cluster runs its daemons as root (SlurmUser=root); this test is not root"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node cluster: the environment (SLURM_CONF, PYTHON, ...) for sbatch/squeue/scancel."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    folder = str(tmp_path_factory.mktemp("slurm"))
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin",
           "SLURM_CONF": os.path.join(folder, "slurm.conf"),
           "PYTHON": sys.executable, "FROSTLINE_REPO": REPO, "PYTHONPATH": REPO}
    start = subprocess.run([CLUSTER, "start", folder], env=env, capture_output=True, text=True, timeout=60)
    try:
        assert start.returncode == 0, f"the local Slurm cluster did not start:\n{start.stdout}\n{start.stderr}"
        yield env
    finally:
        subprocess.run([CLUSTER, "stop", folder], env=env, capture_output=True, timeout=60)


def _slurm(env, *args) -> str:
    res = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"{' '.join(args)}: {res.stderr}"
    return res.stdout.strip()


def _wait_gone(env, job: str, timeout: float = 120) -> None:
    """Wait until no task of `job` is pending or running."""
    deadline = time.time() + timeout
    while _slurm(env, "squeue", "-h", "-j", job, "-o", "%i"):
        assert time.time() < deadline, f"Slurm job {job} still queued after {timeout} s"
        time.sleep(0.2)


def _part2_fragments(out: str) -> list[str]:
    """Finished shards of part 2 of 2 (odd shard numbers)."""
    work = os.path.join(out, "_work")
    names = os.listdir(work) if os.path.isdir(work) else []
    return [n for n in names if re.search(r"-\d*[13579]\.manifest\.parquet$", n)]


def _shard_files(out: str) -> dict[str, bytes]:
    return {f: open(os.path.join(out, f), "rb").read() for f in sorted(os.listdir(out)) if f.endswith((".tar", ".idx"))}


def _by_key(table, columns):
    return sorted(tuple(r[c] for c in columns) for r in table.to_pylist())


def test_sbatch_array_converts_in_two_parts_and_a_cancelled_task_resumes_to_the_same_bytes(slurm, tmp_path):
    """`sbatch --array=0-1` converts in parts 1/2 and 2/2 with no part written by hand; task 1 is cancelled
    (scancel) after its first shard, leaves no lock or scratch file, and, resubmitted alone, finishes the
    conversion: the store equals an uninterrupted 2-part run byte for byte, and a single run in every video's
    sha256, key, label and reject. About 30 s on 2 idle cores (longer than most tests: three conversions of 24
    generated videos, each big enough that a task runs for seconds and can be cancelled in the middle, plus the
    daemons' start and stop)."""
    syn = make_ucf101(str(tmp_path / "src"), num_classes=4, groups=6, clips=1, width=256, height=192, num_frames=120)
    single, two_parts = str(tmp_path / "single"), str(tmp_path / "two_parts")
    convert_dataset("ucf101", syn.root, single, workers=1, shard_size=SHARD_SIZE, progress=False)
    for part in ("1/2", "2/2"):
        convert_dataset("ucf101", syn.root, two_parts, workers=1, shard_size=SHARD_SIZE, part=part, progress=False)

    out, logs = str(tmp_path / "out"), str(tmp_path / "logs")
    os.makedirs(logs)
    args = ["--dataset", "ucf101", "--root", syn.root, "--out", out, "--shard-size", SHARD_SIZE]
    job = _slurm(slurm, "sbatch", "--parsable", "--array=0-1", "--cpus-per-task=1", "--mem-per-cpu=500M",
                 "-o", f"{logs}/%A_%a.out", SBATCH, *args)
    deadline = time.time() + 60
    while not _part2_fragments(out):
        assert time.time() < deadline, "part 2 wrote no shard within 60 s"
        time.sleep(0.02)
    _slurm(slurm, "scancel", f"{job}_1")
    _wait_gone(slurm, job)

    task0, task1 = (open(f"{logs}/{job}_{i}.out").read() for i in (0, 1))
    assert "--part auto: part 1/2 (SLURM_ARRAY_TASK_ID=0)" in task0 and "manifest     not yet" in task0
    assert "videos this run, 1 worker)" in task0          # --cpus-per-task=1 -> --workers 1
    assert "--part auto: part 2/2 (SLURM_ARRAY_TASK_ID=1)" in task1
    assert "make_shards: stopped by SIGTERM: lock released, scratch files removed" in task1, task1
    assert "JobState=CANCELLED" in _slurm(slurm, "scontrol", "show", "job", f"{job}_1")
    work = os.listdir(os.path.join(out, "_work"))
    assert "part-1-of-2.done" in work and "part-2-of-2.done" not in work
    assert not [f for f in work if f.endswith(".lock") or f.endswith(".part")]     # no lock, no half-written file
    assert not os.path.exists(os.path.join(out, "_tmp"))                            # no scratch shard
    assert not os.path.exists(os.path.join(out, "manifest.parquet"))
    done_before = len(_part2_fragments(out))
    assert 1 <= done_before < len(_part2_fragments(two_parts)), "task 1 was not cancelled in the middle"

    again = _slurm(slurm, "sbatch", "--parsable", "--array=1", "--export=ALL,FROSTLINE_ARRAY=0-1",
                   "--cpus-per-task=1", "--mem-per-cpu=500M", "-o", f"{logs}/%A_%a.out", SBATCH, *args)
    _wait_gone(slurm, again)
    resumed = open(f"{logs}/{again}_1.out").read()
    assert "--part auto: part 2/2 (SLURM_ARRAY_TASK_ID=1)" in resumed, resumed
    assert f"({done_before} already done)" in resumed and "manifest     written" in resumed, resumed

    assert _shard_files(out) == _shard_files(two_parts)
    assert read_manifest(out).equals(read_manifest(two_parts))
    assert read_rejects(out).equals(read_rejects(two_parts))
    columns = ["key", "sha256", "label", "class_name", "bytes", "num_frames"]
    assert _by_key(read_manifest(out), columns) == _by_key(read_manifest(single), columns)
    assert _by_key(read_rejects(out), ["key", "reason"]) == _by_key(read_rejects(single), ["key", "reason"])
    check_store(out, syn)
    assert sorted(os.listdir(out)) == sorted(os.listdir(two_parts))
