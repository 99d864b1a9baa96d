"""Readers of each dataset's official layout. Each turns `--root` into a `DatasetIndex` of `VideoRecord`s;
`load` picks the reader. What the readers share is in `layout` (so no reader imports this package back)."""
from __future__ import annotations

import os

from ..records import LayoutError, VideoRecord
from .layout import VIDEO_EXTENSIONS, DatasetIndex, check_record, read_text  # noqa: F401  (read_text, VIDEO_EXTENSIONS: public)

DATASETS = ("k400", "k600", "ucf101", "hmdb51", "ssv2", "folder")


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
    for r in index.records:
        check_record(root, r)
    mark_duplicates(index.records)
    return index


def mark_duplicates(records: list[VideoRecord]) -> None:
    """A key must be unique in a dataset: later annotations of the same key become rejects, not silent drops."""
    seen: dict[str, VideoRecord] = {}
    for r in records:
        first = seen.setdefault(r.key, r)
        if first is not r and r.reject is None:
            r.reject = f"duplicate: key {r.key} already annotated in split {first.split} ({first.source_path})"
