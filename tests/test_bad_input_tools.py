"""The data-side commands' values and bookkeeping: out-of-range flags are argparse errors (status 2) naming the
flag and value, a damaged `_work/settings.json` is one line naming it, and no credential reaches any output, at
any log level, against a real S3 server (moto)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shards.cli import describe, run, setup_logging
from shards.convert import SettingError, check_fps, parse_part, parse_size
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
TOKEN = "FQoGZXIvYXdzEXAMPLEsessionTOKENd0n0tPr1nt"
make_shards = load_tool("make_shards")
make_splits = load_tool("make_splits")


def k400_annotations(root: Path) -> str:
    """A K400 layout whose videos are all missing: every row a counted reject, so a conversion is quick."""
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,aaaaaaaaaaa,0,10,train\n")
    return str(root)


@pytest.mark.parametrize("value", ["inf", "0.0001", "1e7", "nan", "-30", "0", "thirty"])
def test_an_fps_out_of_range_is_an_argparse_error_naming_it(value, capsys):
    with pytest.raises(SystemExit) as e:
        make_shards.parse_args(["--fps", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--fps" in err and value in err and "Traceback" not in err


@pytest.mark.parametrize("flag, value", [("--keyframe-interval", "1000000000"), ("--short-side", "99999"),
                                         ("--workers", "100000"), ("--workers", "0")])
def test_other_make_shards_values_are_bounded(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        make_shards.parse_args([flag, value])
    assert e.value.code == 2 and flag in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--shots", "0"), ("--num-train-sets", "1000"), ("--num-eval-sets", "-1"),
                                         ("--classes-per-set", "x")])
def test_make_splits_counts_are_bounded(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        make_splits.parse_args(["--protocol", "base2novel", "--dataset", "ucf101", "--manifest", "m", "--out", "o",
                                flag, value])
    assert e.value.code == 2 and flag in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[]", b'{"dataset": "k400", "parts": "two"}',
                                     b'{"dataset": "k400", "parts": 1, "splits": ["train"], "classes": [1]}'])
def test_a_damaged_settings_file_is_one_line_naming_it(tmp_path, capsys, content):
    out = tmp_path / "out"
    (out / "_work").mkdir(parents=True)
    (out / "_work" / "settings.json").write_bytes(content)
    root = k400_annotations(tmp_path / "k400")
    for argv in (["--dataset", "k400", "--root", root, "--out", str(out), "--no-progress"],
                 ["--merge", "--out", str(out)]):
        status = run(make_shards.main, argv, prog="make_shards")
        err = capsys.readouterr().err.strip()
        assert status == 2 and "\n" not in err, err
        assert "_work/settings.json: damaged" in err


# ------------------------------------------------------------------------------------------------ credentials

def test_verbose_logging_keeps_the_s3_libraries_quiet_and_redacts_credentials(monkeypatch, capsys):
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    setup_logging(verbose=True)
    try:
        assert logging.getLogger("shards").isEnabledFor(logging.DEBUG)
        for name in ("botocore", "botocore.endpoint", "aiobotocore", "s3fs", "urllib3"):
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        logging.getLogger("botocore.auth").warning("header X-Amz-Security-Token: %s", TOKEN)
        logging.getLogger("shards.test").debug("token %s", TOKEN)
    finally:
        setup_logging()
    err = capsys.readouterr().err
    assert TOKEN not in err and err.count("***") == 2


def test_no_session_token_in_any_output_of_a_verbose_conversion_to_s3(s3_endpoint, s3_bucket, tmp_path):
    """A real conversion and merge into the moto server with --verbose and AWS_SESSION_TOKEN set (subprocesses:
    the commands' own logging set-up is what is tested)."""
    root = k400_annotations(tmp_path / "k400")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AWS_SESSION_TOKEN": TOKEN}
    out = f"s3://{s3_bucket}/k400"
    for args in (["--dataset", "k400", "--root", root, "--out", out, "--workers", "1", "--no-progress"],
                 ["--merge", "--out", out]):
        r = subprocess.run([sys.executable, str(REPO / "tools" / "make_shards.py"), *args, "--verbose"],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "DEBUG" in r.stderr or "merged" in r.stdout
        assert TOKEN not in r.stdout + r.stderr
    r = subprocess.run([sys.executable, str(REPO / "tools" / "verify_shards.py"), out, "--verbose"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and TOKEN not in r.stdout + r.stderr, r.stderr[-2000:]


# ------------------------------------------------------------------------------- property-based: value types

SPLITS_REQUIRED = ["--protocol", "base2novel", "--dataset", "ucf101", "--manifest", "m", "--out", "o"]


def _parses_or_exits_2(parse_args, argv) -> None:
    try:
        parse_args(argv)
    except SystemExit as e:
        assert e.code == 2


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(st.text(max_size=12), st.sampled_from(["inf", "-inf", "nan", "1e400", "0x10", "1_000", "\u0663",
                                                            "\u00b2", "30", " 30 ", "1/0", "0/0", "2/1", "1e3MB"])))
def test_every_data_side_value_gives_a_value_or_an_argparse_error(text):
    for parse in (check_fps, parse_size, parse_part):
        try:
            parse(text)
        except SettingError:
            pass
    for flag in ("--workers", "--short-side", "--keyframe-interval", "--limit", "--shard-size", "--part", "--fps",
                 "--seed", "--splits"):
        _parses_or_exits_2(make_shards.parse_args, [f"{flag}={text}"])
    for flag in ("--shots", "--num-train-sets", "--num-eval-sets", "--classes-per-set", "--seed"):
        _parses_or_exits_2(make_splits.parse_args, SPLITS_REQUIRED + [f"{flag}={text}"])
    _parses_or_exits_2(load_tool("verify_shards").main, ["--max-lines=" + text, "--split"])


# ------------------------------------------------------------------------------- bookkeeping: locks, loader settings

@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe", b"null", b'{"host": "HOST", "pid": "abc"}',
                                     b'{"host": "elsewhere", "heartbeat": "x"}'])
def test_a_lock_that_is_not_a_holder_record_is_one_line_naming_it(tmp_path, content):
    from shards.storage.lock import DamagedLock, RunLock
    import socket
    lock = tmp_path / "run.lock"
    lock.write_bytes(content.replace(b"HOST", socket.gethostname().encode()))
    with pytest.raises(DamagedLock, match="damaged run lock") as e:
        RunLock(str(lock)).acquire()
    assert str(lock) in str(e.value) and describe(e.value) is not None
    assert lock.read_bytes() == content.replace(b"HOST", socket.gethostname().encode())   # left for the user


def test_a_lock_of_pid_0_on_this_host_is_taken_over(tmp_path, caplog):
    from shards.storage.lock import RunLock
    import socket
    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": 0}))
    with caplog.at_level(logging.WARNING), RunLock(str(lock)) as held:
        assert held.took_over is not None
    assert "taking over the lock of a run that is gone" in caplog.text


@pytest.mark.parametrize("setting, value", [("frame_stride", -3), ("num_frames", 0), ("batch_size", 0),
                                            ("num_threads", 0), ("io_timeout_s", float("nan")),
                                            ("interleave_jitter", float("inf")), ("short_side_range", (224,))])
def test_a_loader_setting_out_of_range_names_it(setting, value):
    from pipeline.loader import LoaderConfig, LoaderSettingError
    with pytest.raises(LoaderSettingError, match=setting) as e:
        LoaderConfig(**{setting: value})
    assert describe(e.value) is not None


def test_show_batch_refuses_an_output_that_is_no_image(capsys):
    with pytest.raises(SystemExit) as e:
        load_tool("show_batch").main(["--split", "x.parquet", "--out", "batch.txt"])
    assert e.value.code == 2 and "--out 'batch.txt'" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["s3://", "s3:///prefix", "s3://bucket/../other", "://x"])
def test_an_object_storage_url_without_a_bucket_is_an_error_not_a_local_folder(tmp_path, monkeypatch, capsys, out):
    root = k400_annotations(tmp_path / "k400")
    monkeypatch.chdir(tmp_path)
    for tool, argv in ((make_shards, ["--dataset", "k400", "--root", root, "--out", out, "--no-progress"]),
                       (load_tool("verify_shards"), [out])):
        assert run(tool.main, argv, prog="tool") == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and repr(out) in err and "bucket/prefix" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k400"]
