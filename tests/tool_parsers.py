"""Every command's argparse parser and `--help`, got without running any work: each entry point is run as
`__main__` with `--help`, and the parser that meets `--help` is recorded as it parses (argparse exits there).

All entry points run in one child process (`python tests/tool_parsers.py OUT.json`), from an empty folder with
an empty TMPDIR, so the tests see what `--help` leaves behind and the test process imports none of the tools.
`tool_help()` runs it once per test session and returns, per entry point (a path relative to the repository):
`status` (the exit status), `seconds`, `help` (what it printed), `options` (every option string the parser
accepts, hidden aliases included), `visible` (those `--help` shows), `no_default` (options with a default that
their help line does not show) and `examples` (the command lines of the entry point's docstring).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = sorted(str(p.relative_to(REPO)) for p in [*REPO.glob("tools/*.py"), *REPO.glob("tools/bench/*.py")]
               if p.name != "__init__.py")
MODEL_ENTRY_POINTS = ["model/train.py", "model/evaluate.py", "model/average.py"]
ENTRY_POINTS = TOOLS + MODEL_ENTRY_POINTS


def docstring_examples(path: Path) -> list[str]:
    """The command lines (`python ...`, `bash ...`) of a file's module docstring, whitespace-normalised."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return [" ".join(line.split()) for line in doc.splitlines() if line.strip().startswith(("python ", "bash "))]


def _describe(path: str) -> dict:
    import argparse
    import contextlib
    import io
    import runpy
    import time

    seen: list[argparse.ArgumentParser] = []
    parse = argparse.ArgumentParser.parse_known_args

    def spy(self, args=None, namespace=None):
        seen.append(self)
        return parse(self, args, namespace)

    argv, syspath, environ = sys.argv, list(sys.path), dict(os.environ)
    sys.argv = [str(REPO / path), "--help"]
    out, status, start = io.StringIO(), None, time.perf_counter()
    argparse.ArgumentParser.parse_known_args = spy
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(REPO / path), run_name="__main__")
    except SystemExit as exc:
        status = exc.code
    finally:
        argparse.ArgumentParser.parse_known_args = parse
        sys.argv, sys.path[:] = argv, syspath
        os.environ.clear()
        os.environ.update(environ)
    info = {"status": status, "seconds": time.perf_counter() - start, "help": out.getvalue(),
            "options": [], "visible": [], "no_default": [], "examples": docstring_examples(REPO / path)}
    if seen:
        parser = seen[-1]
        for action in parser._actions:
            info["options"] += action.option_strings
            if action.help == argparse.SUPPRESS:
                continue
            info["visible"] += action.option_strings
            unset = any(action.default is v for v in (None, False, argparse.SUPPRESS))
            if action.option_strings and not unset and not isinstance(action, argparse._HelpAction):
                line = " ".join(parser._get_formatter()._format_action(action).split())
                if "default" not in line:
                    info["no_default"].append(action.option_strings[-1])
    return info


@lru_cache(maxsize=None)
def tool_help() -> dict[str, dict]:
    """`--help` of every entry point, run once in a child process (see the module docstring); also returns, under
    the key `"left behind"`, the files that the runs wrote in their working folder and TMPDIR."""
    with tempfile.TemporaryDirectory() as tmp:
        cwd, tmpdir, result = Path(tmp, "cwd"), Path(tmp, "tmp"), Path(tmp, "help.json")
        cwd.mkdir()
        tmpdir.mkdir()
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TMPDIR=str(tmpdir))
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(result)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        found = json.loads(result.read_text())
        found["left behind"] = sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*")
                                      if p.is_file() and p != result)   # files only: importing torch makes a folder
        return found


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    Path(sys.argv[1]).write_text(json.dumps({path: _describe(path) for path in ENTRY_POINTS}))
