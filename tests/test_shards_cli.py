"""tools/make_shards.py: the command-line contract, its progress bar, closing summary and error messages."""
import os
import subprocess
import sys

from shards.manifest import read_manifest
from shards.generated.synthetic import make_hmdb51

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "make_shards.py")


def run(*args, timeout=300):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=timeout)


def test_cli_converts_and_summarises(tmp_path):
    syn = make_hmdb51(str(tmp_path / "hmdb"), num_classes=2, per_class=4)
    out = str(tmp_path / "out")
    res = run("--dataset", "hmdb51", "--root", syn.root, "--out", out, "--workers", "1", "--codec", "vp9",
              "--short-side", "256", "--fps", "30", "--shard-size", "512MB", "--seed", "0", "--progress")
    assert res.returncode == 0, res.stderr
    for line in ("samples      4", "rejects      4 (", "decode error: 1", "missing: 1", "unreadable container: 2",
                 "bytes",
                 "shards       1", "elapsed", "videos/s", "manifest     written"):
        assert line in res.stdout, (line, res.stdout)
    assert "video/s" in res.stderr and "rejects=4" in res.stderr     # the tqdm bar (--progress: stderr is a pipe)
    assert read_manifest(out).num_rows == 4


def test_cli_parts_and_merge(tmp_path):
    syn = make_hmdb51(str(tmp_path / "hmdb"), num_classes=2, per_class=4, quirks=False)
    out = str(tmp_path / "out")
    for part in ("1/2", "2/2"):
        res = run("--dataset", "hmdb51", "--root", syn.root, "--out", out, "--workers", "1", "--part", part,
                  "--no-progress")
        assert res.returncode == 0, res.stderr
    assert "manifest     written" in res.stdout
    res = run("--merge", "--out", out)
    assert res.returncode == 0 and "merged" in res.stdout and "8 samples, 0 rejects" in res.stdout


def test_cli_errors_are_clear(tmp_path):
    res = run("--dataset", "ucf101", "--root", str(tmp_path), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert f"expected the UCF101 split lists (ucfTrainTestlist/) at {tmp_path}/ucfTrainTestlist" in res.stderr
    res = run("--dataset", "hmdb51", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--part", "5")
    assert res.returncode == 2 and "--part must look like I/N" in res.stderr
    res = run("--merge", "--out", str(tmp_path / "nothing"))
    assert res.returncode == 2 and "holds no conversion" in res.stderr
    res = run("--dataset", "k400", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--codec", "av1")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_bad_arguments_are_argparse_errors(tmp_path):
    syn = make_hmdb51(str(tmp_path / "hmdb"), num_classes=2, per_class=2, quirks=False)
    out = str(tmp_path / "out")
    for flag, value, text in [("--limit", "-1", "--limit: must be at least 1, got '-1'"),
                              ("--limit", "0", "--limit: must be at least 1"),
                              ("--workers", "0", "--workers: must be at least 1"),
                              ("--fps", "-30", "--fps must be from 1 to 240"),
                              ("--shard-size", "0MB", "the shard size must be positive"),
                              ("--shard-size", "lots", "cannot read size"),
                              ("--keyframe-interval", "x", "expected a whole number")]:
        res = run("--dataset", "hmdb51", "--root", syn.root, "--out", out, flag, value)
        assert res.returncode == 2 and text in res.stderr and "usage:" in res.stderr, (flag, value, res.stderr)
    assert not os.path.exists(out)                                  # nothing converted, nothing written
    res = run("--dataset", "hmdb51", "--out", out)
    assert res.returncode == 2 and "give --dataset, --root and --out" in res.stderr
    res = run("--merge")
    assert res.returncode == 2 and "--merge needs --out" in res.stderr
