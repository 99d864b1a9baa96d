"""Expected failures of the shards tools are one line naming the file or URL, with exit status 2, for real:
wrong S3 credentials (a moto server that checks them), an unreachable endpoint, a read-only folder, a full disk."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from local_s3 import free_port, start_moto_server

from shards.generated.synthetic import make_hmdb51

REPO = Path(__file__).resolve().parents[1]
SECRET = "wrongSECRETd0n0tPr1nt"


def _tool(name, *args, env=None, prefix=()):
    return subprocess.run([*prefix, sys.executable, str(REPO / "tools" / name), *args], capture_output=True,
                          text=True, timeout=300, env=env)


def _one_line(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stderr)
    line = res.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, res.stderr
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory):
    return make_hmdb51(str(tmp_path_factory.mktemp("errors_src")), num_classes=2, per_class=3, quirks=False)


@pytest.fixture(scope="module")
def strict_s3():
    """A moto server that checks credentials (after its first request, which creates the bucket)."""
    proc, url = start_moto_server({**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "1"})
    boto3.client("s3", endpoint_url=url, aws_access_key_id="AKIAFIRST", aws_secret_access_key="first",
                 region_name="us-east-1").create_bucket(Bucket="strict")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _s3_env(endpoint):
    return {**os.environ, "PYTHONPATH": str(REPO), "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIAWRONGKEY",
            "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
            "FROSTLINE_IO_RETRY_S": "2"}


def test_wrong_s3_credentials_name_the_url_and_not_the_secret(strict_s3, hmdb):
    env = _s3_env(strict_s3)
    res = _tool("make_shards.py", "--dataset", "hmdb51", "--root", hmdb.root, "--out", "s3://strict/out",
                "--workers", "1", "--no-progress", env=env)
    line = _one_line(res, "s3://strict/out/", "access denied")
    assert SECRET not in res.stderr + res.stdout
    res = _tool("verify_shards.py", "s3://strict/out", env=env)
    _one_line(res, "s3://strict/out/manifest.parquet", "access denied")
    res = _tool("make_splits.py", "--protocol", "base2novel", "--dataset", "hmdb51", "--manifest", "s3://strict/out",
                "--out", "s3://strict/splits", env=env)
    _one_line(res, "s3://strict/out", "access denied")
    assert SECRET not in line + res.stderr


def test_unreachable_endpoint_names_it(hmdb):
    endpoint = f"http://127.0.0.1:{free_port()}"     # nothing listens there
    env = _s3_env(endpoint)
    res = _tool("make_shards.py", "--dataset", "hmdb51", "--root", hmdb.root, "--out", "s3://nowhere/out",
                "--workers", "1", "--no-progress", env=env)
    _one_line(res, "s3://nowhere/out/", "storage unreachable for", endpoint)
    res = _tool("verify_shards.py", "s3://nowhere/out", env=env)
    _one_line(res, "s3://nowhere/out/manifest.parquet", "storage unreachable for")


def test_read_only_output_folder_is_permission_denied(tmp_path, hmdb):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    prefix = ()
    if os.geteuid() == 0:   # root ignores file modes: drop the capabilities that let it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a folder unwritable")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    try:
        res = _tool("make_shards.py", "--dataset", "hmdb51", "--root", hmdb.root, "--out", str(folder / "out"),
                    "--workers", "1", "--no-progress", prefix=prefix)
    finally:
        folder.chmod(0o755)
    if prefix and "setpriv" in res.stderr:
        pytest.skip(f"setpriv is not permitted here: {res.stderr.strip()}")
    _one_line(res, f"{folder}/out", "permission denied")


def test_full_disk_is_one_line(tmp_path, hmdb):
    mount = tmp_path / "tiny"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()}")
    try:
        res = _tool("make_shards.py", "--dataset", "hmdb51", "--root", hmdb.root, "--out", str(mount / "out"),
                    "--workers", "1", "--no-progress")
        _one_line(res, f"{mount}/out/", "no space left on device")
    finally:
        subprocess.run(["umount", str(mount)], check=True)
