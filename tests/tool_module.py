"""Import a command-line tool (tools/NAME.py) as a module: the tools folder holds scripts, not a package."""
from __future__ import annotations

import importlib.util
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name: str):
    """`name` is a path under tools/ without `.py`: "predict", "bench/merge"."""
    spec = importlib.util.spec_from_file_location(f"frostline_tool_{name.replace('/', '_')}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(name: str, out: Path) -> str:
    """`python tools/NAME.py --out OUT --quick` from the repository root, offline; its stdout (fails the test
    with the end of both streams when it exits non-zero)."""
    import os
    import subprocess
    import sys
    r = subprocess.run([sys.executable, f"tools/{name}.py", "--out", str(out), "--quick"], cwd=TOOLS.parent,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r.stdout
