"""Readers of each dataset's official layout. Each turns `--root` into a `DatasetIndex` of `VideoRecord`s."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..records import LayoutError, VideoRecord

DATASETS = ("k400", "k600", "ucf101", "hmdb51", "ssv2", "folder")
# files that are videos wherever a layout does not name them (folder datasets, tools/predict.py's folders)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv",
                    ".3gp", ".ts")


@dataclass
class DatasetIndex:
    """What a source found: the class list (index = label id), the split names in order, the records."""

    dataset: str
    classes: list[str]
    splits: list[str]
    records: list[VideoRecord]


def load(dataset: str, root: str, splits: list[str] | None = None, *, test_fraction: float | None = None,
         seed: int = 0) -> DatasetIndex:
    """Read `root` in the layout of `dataset`, keep the requested splits, reject duplicate keys. `test_fraction`
    and `seed`: the folder layout's seeded test share (shards/sources/folder.py)."""
    if test_fraction is not None and dataset != "folder":
        raise LayoutError(f"--test-fraction is for --dataset folder; {dataset} has its own splits")
    if dataset not in DATASETS:
        raise LayoutError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if not os.path.isdir(root):
        raise LayoutError(f"--root {root} is not a folder")
    root = os.path.abspath(root)
    if dataset in ("k400", "k600"):
        from .kinetics import read
        index = read(root, dataset, splits)
    elif dataset == "ucf101":
        from .ucf101 import read
        index = read(root)
    elif dataset == "hmdb51":
        from .hmdb51 import read
        index = read(root)
    elif dataset == "folder":
        from .folder import read
        index = read(root, test_fraction, seed)
    else:
        from .ssv2 import read
        index = read(root, splits)
    if splits:
        unknown = [s for s in splits if s not in index.splits]
        if unknown:
            raise LayoutError(f"{dataset} has splits {index.splits}; unknown: {unknown}")
        index.splits = [s for s in index.splits if s in splits]
        index.records = [r for r in index.records if r.split in index.splits]
    mark_duplicates(index.records)
    return index


def mark_duplicates(records: list[VideoRecord]) -> None:
    """A key must be unique in a dataset: later annotations of the same key become rejects, not silent drops."""
    seen: dict[str, VideoRecord] = {}
    for r in records:
        first = seen.setdefault(r.key, r)
        if first is not r and r.reject is None:
            r.reject = f"duplicate: key {r.key} already annotated in split {first.split} ({first.source_path})"


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
