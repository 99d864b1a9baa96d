"""Every tool speaks the same command line: `-q/-v`, defaults shown in `--help`, the docstring's examples in
`--help`, `--help` that exits 0 at once and writes nothing, and one name for one idea (old names kept hidden)."""
import subprocess
from pathlib import Path

import pytest

from tool_parsers import REPO, TOOLS, tool_help


@pytest.mark.parametrize("tool", TOOLS)
def test_help_exits_0_at_once_writing_nothing_and_shows_everything_a_user_needs(tool):
    info = tool_help()[tool]
    assert info["status"] == 0, f"{tool} --help exited {info['status']}"
    assert info["seconds"] < 60, f"{tool} --help took {info['seconds']:.0f} s: it must not run work"
    assert {"-q", "--quiet", "-v", "--verbose"} <= set(info["visible"]), f"{tool} lacks -q/-v"
    assert info["no_default"] == [], f"{tool} --help hides the defaults of {info['no_default']}"
    shown = " ".join(info["help"].split())
    assert info["examples"], f"{tool}'s docstring has no example command line"
    missing = [e for e in info["examples"] if e not in shown]
    assert not missing, f"{tool} --help lacks its docstring's examples {missing}"


def test_help_of_every_tool_leaves_no_file_behind():
    assert tool_help()["left behind"] == []


def test_one_name_for_one_idea_with_the_old_spelling_hidden():
    help_ = tool_help()
    renamed = {"--clip": "--model", "--batch": "--batch-size", "--stride": "--frame-stride",
               "--frames": "--num-frames"}
    for tool in TOOLS:
        info = help_[tool]
        for old, new in renamed.items():
            if tool == "tools/pretrain_clip.py" and old == "--frames":
                continue   # frames of the world video a training image is taken from, not frames per clip
            assert old not in info["visible"], f"{tool} shows {old}; the tools' name is {new}"
            if old in info["options"]:
                assert new in info["visible"], f"{tool} accepts {old} without its new name {new}"
    assert "--clip" in help_["tools/predict.py"]["options"] and "--model" in help_["tools/predict.py"]["visible"]
    assert "--stride" in help_["tools/bench/decode.py"]["options"]


def test_an_old_option_name_still_sets_the_new_option():
    import argparse
    from shards.cli import add_alias, tool_parser
    p = tool_parser("Demo.\n\n    python tools/x.py --model M")
    p.add_argument("--model", dest="clip", default=None)
    add_alias(p, "--clip", "--model")
    assert p.parse_args(["--clip", "ViT-B-16"]).clip == "ViT-B-16"
    assert p.parse_args([]).clip is None
    assert "--clip" not in p.format_help() and "python tools/x.py --model M" in p.format_help()
    assert isinstance(p, argparse.ArgumentParser)


def test_gpu_check_help_prints_usage_and_runs_nothing(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "tools/gpu_check.sh"), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert proc.returncode == 0, proc.stderr
    assert "bash tools/gpu_check.sh" in proc.stdout and "nvidia-smi" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()
    bad = subprocess.run(["bash", str(REPO / "tools/gpu_check.sh"), "--nonsense"], capture_output=True, text=True,
                         timeout=30, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert bad.returncode == 2 and "usage" in bad.stderr and not (tmp_path / "out").exists()
