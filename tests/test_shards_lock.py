"""One live run per output, no orphans: the project's one run lock (make_shards' parts and merge, training and
evaluation output folders), local and on S3, and what a kill -9 leaves behind."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from shards.storage.lock import DamagedLock, LockHeld, RunLock, output_lock
from shards.manifest import read_manifest
from shards.storage.orphans import pid_alive, process_start, sweep_tempdirs
from shards.generated.synthetic import make_hmdb51

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "make_shards.py")
HOLD = ("import sys, time; from shards.storage.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(120)")


def _cli(root, out, *extra):
    return [sys.executable, TOOL, "--dataset", "hmdb51", "--root", root, "--out", out, "--shard-size", "30kB",
            "--no-progress", *extra]


def _hold(url):
    """A separate live process holding the lock `url` (what a running make_shards does)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert proc.stdout.readline().strip() == "held"
    return proc


def _children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                out.append((int(entry), process_start(int(entry))))
    return out


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory):
    return make_hmdb51(str(tmp_path_factory.mktemp("lock_src")), num_classes=3, per_class=8, quirks=False,
                       num_frames=60)


def test_a_second_live_run_is_refused_naming_the_first(tmp_path, hmdb):
    out = str(tmp_path / "out")
    holder = _hold(os.path.join(out, "_work", "part-1-of-1.lock"))
    try:
        res = subprocess.run(_cli(hmdb.root, out, "--workers", "1"), capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "\n" not in line and "in use by another run" in line
    assert f"host {socket.gethostname()}, pid {holder.pid}, started " in line
    assert not os.path.exists(os.path.join(out, "_work", "settings.json"))     # refused before writing anything


def test_kill9_leaves_no_orphans_and_the_next_run_takes_over(tmp_path, hmdb):
    out = str(tmp_path / "out")
    proc = subprocess.Popen(_cli(hmdb.root, out, "--workers", "2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    kids = []
    while time.time() < deadline and proc.poll() is None:
        kids = _children(proc.pid)
        if len(kids) >= 3 and os.path.exists(os.path.join(out, "_work", "part-1-of-1.lock")):
            break   # two workers and multiprocessing's resource tracker
        time.sleep(0.05)
    assert proc.poll() is None and len(kids) >= 3, "the conversion finished before it could be killed"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)               # the parent only: its children must follow by themselves
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(pid_alive(pid, start) for pid, start in kids):
        time.sleep(0.1)
    alive = [pid for pid, start in kids if pid_alive(pid, start)]
    assert not alive, f"orphaned processes {alive} of the killed make_shards"
    assert os.path.exists(os.path.join(out, "_work", "part-1-of-1.lock"))      # the stale lock is left

    res = subprocess.run(_cli(hmdb.root, out, "--workers", "1"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"taking over the lock of a run that is gone (host {socket.gethostname()}, pid {proc.pid}" in res.stderr
    assert read_manifest(out).num_rows == hmdb.total
    assert not os.path.exists(os.path.join(out, "_tmp"))                        # the killed run's scratch is gone
    assert not os.path.exists(os.path.join(out, "_work", "part-1-of-1.lock"))   # released at the end


def test_parts_share_one_out_at_the_same_time(tmp_path, hmdb):
    out = str(tmp_path / "out")
    procs = [subprocess.Popen(_cli(hmdb.root, out, "--workers", "1", "--part", part), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for part in ("1/2", "2/2")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert read_manifest(out).num_rows == hmdb.total


def test_stale_detection_same_host_by_pid_other_host_by_heartbeat(tmp_path):
    url = str(tmp_path / "x.lock")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for record, stale in [
        ({"host": socket.gethostname(), "pid": dead.pid, "started": "then", "heartbeat": time.time()}, True),
        ({"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid()),
          "started": "now", "heartbeat": 0}, False),
        ({"host": socket.gethostname(), "pid": os.getpid(), "pid_start": -5, "started": "reused", "heartbeat": 0},
         True),
        ({"host": "elsewhere", "pid": 1, "started": "now", "heartbeat": time.time()}, False),
        ({"host": "elsewhere", "pid": 1, "started": "long ago", "heartbeat": time.time() - 3600}, True),
    ]:
        with open(url, "w") as f:
            json.dump(record, f)
        lock = RunLock(url)
        if stale:
            with lock:
                assert lock.took_over["started"] == record["started"]
                assert json.load(open(url))["pid"] == os.getpid()
            assert not os.path.exists(url)
        else:
            with pytest.raises(LockHeld, match=f"host {record['host']}, pid {record['pid']}"):
                lock.acquire()
            assert json.load(open(url)) == record                          # a refused run leaves it alone


def test_s3_lock_refuses_a_live_run_and_takes_over_a_killed_one(s3_bucket, hmdb):
    out = f"s3://{s3_bucket}/hmdb"
    url = f"{out}/_work/part-1-of-1.lock"
    holder = _hold(url)
    try:
        res = subprocess.run(_cli(hmdb.root, out, "--workers", "1"), capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and f"pid {holder.pid}" in res.stderr and url in res.stderr, res.stderr
        with pytest.raises(LockHeld):
            RunLock(url).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(url) as lock:                                # the holder was killed: its lock is stale
        assert lock.took_over["pid"] == holder.pid


def test_heartbeat_refreshes_the_lock(tmp_path):
    url = str(tmp_path / "hb.lock")
    with RunLock(url, heartbeat_s=0.1):
        first = json.load(open(url))["heartbeat"]
        time.sleep(0.5)
        assert json.load(open(url))["heartbeat"] > first


def test_temp_folders_of_dead_processes_are_swept():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tempfile.mkdtemp(prefix=f"frostline-test-sweep-{dead.pid}-")
    mine = tempfile.mkdtemp(prefix=f"frostline-test-sweep-{os.getpid()}-")
    try:
        assert sweep_tempdirs("frostline-test-sweep-") == [gone]
        assert not os.path.exists(gone) and os.path.isdir(mine)
    finally:
        os.rmdir(mine)


def test_a_merge_waits_for_a_running_merge(tmp_path):
    url = str(tmp_path / "m.lock")
    first = RunLock(url).acquire()
    threading_timer = __import__("threading").Timer(0.5, first.release)
    threading_timer.start()
    t0 = time.monotonic()
    with RunLock(url).acquire(wait_s=30) as second:           # waits for the first, then holds it
        assert second.token and json.load(open(url))["token"] == second.token
    assert time.monotonic() - t0 >= 0.4
    with RunLock(url).acquire():
        with pytest.raises(LockHeld):
            RunLock(url).acquire(wait_s=0.3)


@pytest.mark.parametrize("content", ["", "{\"host\": \"x\", ", "[1, 2]", "null"])
def test_a_lock_that_is_not_a_json_object_is_refused_naming_it(tmp_path, content):
    url = str(tmp_path / "run.lock")
    with open(url, "w") as f:
        f.write(content)
    with pytest.raises(DamagedLock, match=f"{url}: damaged run lock"):
        output_lock(str(tmp_path)).acquire()
    assert open(url).read() == content                                   # left for a person to look at


def test_a_training_output_dir_on_s3_gets_the_same_lock(s3_bucket):
    """`output_lock` (what model/train.py and model/evaluate.py hold) on s3://: a live run refuses a second, a run
    on another host is judged by its heartbeat, and a stale one is taken over."""
    out = f"s3://{s3_bucket}/runs/k400"
    with output_lock(out) as first:
        assert first.url == f"{out}/run.lock"
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}.*lock {out}/run.lock"):
            output_lock(out).acquire()
    from shards import storage
    for heartbeat, stale in [(time.time(), False), (time.time() - 3600, True)]:
        record = {"host": "another-node", "pid": 7, "started": "then", "heartbeat": heartbeat}
        storage.write_bytes(f"{out}/run.lock", json.dumps(record).encode())
        lock = output_lock(out)
        if stale:
            with lock:
                assert lock.took_over["host"] == "another-node"
            assert not storage.exists(f"{out}/run.lock")
        else:
            with pytest.raises(LockHeld, match="host another-node, pid 7"):
                lock.acquire()
