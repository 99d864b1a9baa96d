"""What every layout reader shares: the `DatasetIndex` it returns and the file helpers for annotation lists."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..records import LayoutError, VideoRecord


@dataclass
class DatasetIndex:
    """What a source found: the class list (index = label id), the split names in order, the records."""

    dataset: str
    classes: list[str]
    splits: list[str]
    records: list[VideoRecord]


def read_lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a text file; CRLF and LF both work."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline=None) as f:
        return [(no, line.strip()) for no, line in enumerate(f, start=1) if line.strip()]


def require(path: str, what: str) -> str:
    """Fail with the expected location when a file or folder of the layout is missing."""
    if not os.path.exists(path):
        raise LayoutError(f"expected {what} at {path}, but it does not exist")
    return path


def case_insensitive(folder: str, name: str, cache: dict) -> str | None:
    """The actual file in `folder` whose name matches `name` ignoring case, or None."""
    if folder not in cache:
        try:
            cache[folder] = {n.lower(): n for n in os.listdir(folder)}
        except OSError:
            cache[folder] = {}
    found = cache[folder].get(name.lower())
    return os.path.join(folder, found) if found else None
