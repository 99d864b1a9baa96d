"""Crash safety: a run killed with SIGKILL, or stopped by SIGTERM/SIGINT, then re-run gives exactly the
uninterrupted result."""
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from shards.convert import convert_dataset
from shards.index import build_index
from shards.manifest import read_manifest, read_rejects
from shards.generated.synthetic import make_ucf101

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(root, out, workers):
    return [sys.executable, os.path.join(REPO, "tools", "make_shards.py"), "--dataset", "ucf101", "--root", root,
            "--out", out, "--workers", str(workers), "--shard-size", "20kB", "--no-progress"]


def _assert_only_whole_shards(out):
    """Every .tar under its final name is complete and has its index."""
    for f in os.listdir(out):
        if f.endswith(".tar"):
            with open(os.path.join(out, f), "rb") as fh:
                index = build_index(fh)
            assert open(os.path.join(out, f[:-4] + ".idx")).read() == index
            with tarfile.open(os.path.join(out, f)) as t:
                for m in t.getmembers():
                    assert len(t.extractfile(m).read()) == m.size


def _fragments(out) -> int:
    work = os.path.join(out, "_work")
    return len([f for f in os.listdir(work) if f.endswith(".manifest.parquet")]) if os.path.isdir(work) else 0


def _start_until_fragments(syn, out, workers, fragments, **popen) -> subprocess.Popen:
    """make_shards on `syn`, returned once it has finished `fragments` shards (and is still running)."""
    proc = subprocess.Popen(_cli(syn.root, out, workers), **popen)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _fragments(out) < fragments:
        time.sleep(0.005)
    assert proc.poll() is None, "the conversion finished before it could be stopped"
    return proc


def _resume_gives_the_reference(syn, out, workers, ref, done) -> subprocess.CompletedProcess:
    """Re-run the same command: it skips the `done` shards and ends with exactly the files of `ref`."""
    res = subprocess.run(_cli(syn.root, out, workers), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"({done} already done)" in res.stdout
    assert read_manifest(out).equals(read_manifest(ref))
    assert read_rejects(out).equals(read_rejects(ref))
    shards = sorted(f for f in os.listdir(ref) if f.endswith((".tar", ".idx")))
    assert sorted(f for f in os.listdir(out) if f.endswith((".tar", ".idx"))) == shards
    for f in shards:
        assert open(os.path.join(out, f), "rb").read() == open(os.path.join(ref, f), "rb").read()
    assert not os.path.exists(os.path.join(out, "_tmp"))
    return res


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("resume_src"))
    syn = make_ucf101(root, num_classes=4, groups=6, clips=1, width=96, height=72, num_frames=48)
    ref = str(tmp_path_factory.mktemp("resume_ref"))
    convert_dataset("ucf101", root, ref, workers=1, shard_size="20kB", progress=False)
    return syn, ref


@pytest.mark.slow
@pytest.mark.parametrize("workers,after_fragments", [(1, 1), (2, 3)])
def test_kill9_then_resume_gives_same_manifest(tmp_path, dataset, workers, after_fragments):
    syn, ref = dataset
    out = str(tmp_path / "out")
    proc = _start_until_fragments(syn, out, workers, after_fragments, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)            # the run and its worker processes, as a crash would
    proc.wait()
    assert not os.path.exists(os.path.join(out, "manifest.parquet"))
    _assert_only_whole_shards(out)
    _resume_gives_the_reference(syn, out, workers, ref, done=_fragments(out))
    _assert_only_whole_shards(out)


def _workers_of(pid: int) -> list[int]:
    """The worker processes (multiprocessing spawn children, not its resource tracker) of process `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signum,workers", [(signal.SIGTERM, 2), (signal.SIGINT, 1)], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_releases_the_lock_and_scratch_and_the_rerun_resumes_to_the_same_bytes(
        tmp_path, dataset, signum, workers):
    """What `scancel`, a time limit or Ctrl-C does: the run stops with a clear line and status 128 + signal, its
    workers are gone, no lock or scratch file stays, and the same command resumes to the uninterrupted bytes."""
    syn, ref = dataset
    out = str(tmp_path / "out")
    proc = _start_until_fragments(syn, out, workers, 1, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers_before = _workers_of(proc.pid)
    assert len(workers_before) == (workers if workers > 1 else 0)
    proc.send_signal(signum)          # to make_shards alone: it stops its workers itself
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signum
    name = signal.Signals(signum).name
    assert f"make_shards: stopped by {name}: lock released, scratch files removed; run the same command again " \
           "to resume" in err
    assert "Traceback" not in err
    deadline = time.time() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in workers_before) and time.time() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers_before if os.path.exists(f"/proc/{pid}")]
    left = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files]
    assert not [f for f in left if f.endswith((".lock", ".part"))], left
    assert not os.path.exists(os.path.join(out, "_tmp"))
    assert not os.path.exists(os.path.join(out, "manifest.parquet"))
    _assert_only_whole_shards(out)
    res = _resume_gives_the_reference(syn, out, workers, ref, done=_fragments(out))
    assert "taking over the lock" not in res.stderr          # there was no lock to take over


def test_rerun_of_finished_job_redoes_nothing(tmp_path, dataset):
    syn, ref = dataset
    out = str(tmp_path / "o")
    first = convert_dataset("ucf101", syn.root, out, workers=1, shard_size="20kB", progress=False)
    stamp = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out) if f.endswith(".tar")}
    again = convert_dataset("ucf101", syn.root, out, workers=1, shard_size="20kB", progress=False)
    fragments = [f for f in os.listdir(os.path.join(out, "_work")) if f.endswith(".manifest.parquet")]
    assert again.processed == 0 and again.resumed_shards == len(fragments) >= first.shards
    assert (again.samples, again.rejects, again.bytes) == (first.samples, first.rejects, first.bytes)
    assert stamp == {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in stamp}
    assert read_manifest(out).equals(read_manifest(ref))


def test_partial_scratch_is_cleaned_and_redone(tmp_path, dataset):
    """A leftover scratch shard and a final-named tar without its fragment (killed between the two) are redone."""
    syn, ref = dataset
    out = str(tmp_path / "o")
    convert_dataset("ucf101", syn.root, out, workers=1, shard_size="20kB", progress=False)
    frags = sorted(f for f in os.listdir(os.path.join(out, "_work")) if f.endswith(".manifest.parquet"))
    last = frags[-1].split(".")[0]
    os.remove(os.path.join(out, "_work", frags[-1]))
    os.remove(os.path.join(out, "manifest.parquet"))
    with open(os.path.join(out, f"{last}.tar"), "r+b") as f:
        f.truncate(1000)                              # as if a previous crash left a damaged copy
    os.makedirs(os.path.join(out, "_tmp", "part-1-of-1"))
    open(os.path.join(out, "_tmp", "part-1-of-1", "x.tar.1.part"), "wb").write(b"junk")
    again = convert_dataset("ucf101", syn.root, out, workers=1, shard_size="20kB", progress=False)
    assert again.processed > 0
    assert read_manifest(out).equals(read_manifest(ref))
    assert open(os.path.join(out, f"{last}.tar"), "rb").read() == open(os.path.join(ref, f"{last}.tar"), "rb").read()
    assert not os.path.exists(os.path.join(out, "_tmp"))


CRASH_SCRIPT = r'''
import os, sys
sys.path.insert(0, {repo!r})
import shards.convert as C
from shards.transcode import transcode

def crashing(path, opts):
    if path and os.path.basename(path) == {victim!r}:
        os._exit(139)            # what a segfaulting decoder looks like from the outside
    return transcode(path, opts)

C.transcode = crashing           # applied in the worker processes too: spawn re-runs this module

if __name__ == "__main__":
    print(C.convert_dataset("ucf101", {root!r}, {out!r}, workers=2, progress=False))
'''


@pytest.mark.slow
def test_worker_crash_is_a_reject(tmp_path):
    syn = make_ucf101(str(tmp_path / "src"), num_classes=2, groups=4, quirks=False)
    victim = f"v_{syn.classes[0]}_g02_c01.avi"
    script = tmp_path / "crash.py"
    out = str(tmp_path / "out")
    script.write_text(CRASH_SCRIPT.format(repo=REPO, victim=victim, root=syn.root, out=out))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rejects = read_rejects(out).to_pylist()
    assert [(r["video_id"], r["reason"]) for r in rejects] == [
        (victim[:-4], "decode error at frame 0: the decoder crashed (its worker process died)")]
    assert read_manifest(out).num_rows == syn.total - 1
