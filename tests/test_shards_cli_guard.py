"""shards.cli: logging set-up and the guard that turns expected failures into one line with exit status 2."""
import argparse
import errno
import logging

import pytest
import yaml

from shards.cli import Failure, add_logging_flags, describe, run, setup_logging
from shards.records import LayoutError


def _raiser(exc):
    def main():
        raise exc
    return main


def test_expected_failures_are_one_line_with_status_2(capsys, tmp_path):
    cases = [
        (LayoutError("/data/ucf: no classInd.txt"), "/data/ucf: no classInd.txt"),
        (Failure("s3://b/out is locked by host:1"), "s3://b/out is locked by host:1"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y.parquet"), "/x/y.parquet"),
        (PermissionError(errno.EACCES, "Permission denied", "/ro/out"), "/ro/out: permission denied"),
        (OSError(errno.ENOSPC, "No space left on device", "/full/a.tar"), "/full/a.tar: no space left on device"),
    ]
    for exc, text in cases:
        assert run(_raiser(exc), prog="tool") == 2
        err = capsys.readouterr().err
        assert err.startswith("tool: error: ") and text in err and err.count("\n") == 1, err


def test_s3_denied_names_the_url_and_never_the_secret(capsys):
    exc = PermissionError("Forbidden")
    exc.filename = "s3://bucket/out/manifest.parquet"
    assert run(_raiser(exc), prog="tool") == 2
    err = capsys.readouterr().err
    assert "s3://bucket/out/manifest.parquet: access denied" in err


def test_broken_yaml_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("a: 1\nb: [2\n")
    with open(path) as f:
        with pytest.raises(yaml.YAMLError) as info:
            yaml.safe_load(f)
    assert run(_raiser(info.value), prog="tool") == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "broken YAML" in err


def test_bugs_keep_their_traceback():
    with pytest.raises(KeyError):
        run(_raiser(KeyError("bug")))
    with pytest.raises(ValueError):           # a ValueError of Python itself is a bug, not bad input
        run(_raiser(ValueError("bug")))
    assert describe(TypeError("x")) is None
    assert run(lambda: None) == 0 and run(lambda: 3) == 3


def test_logging_levels_and_one_handler(capsys):
    p = add_logging_flags(argparse.ArgumentParser())
    assert setup_logging(**vars(p.parse_args(["--quiet"]))) == logging.WARNING
    assert setup_logging(**vars(p.parse_args(["-v"]))) == logging.DEBUG
    assert setup_logging(**vars(p.parse_args([]))) == logging.INFO
    logging.getLogger("frostline.test").info("hello once")
    assert capsys.readouterr().err.count("hello once") == 1
    with pytest.raises(SystemExit):
        p.parse_args(["--quiet", "--verbose"])
