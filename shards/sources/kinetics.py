"""Kinetics-400 / -600 as released by CVDF: `annotations/{train,val,test}.csv` plus videos anywhere under ROOT.

CSV header: `label,youtube_id,time_start,time_end,split` (older releases add `is_cc`; K600's test
list has no label). Videos are `{youtube_id}_{start:06d}_{end:06d}.{mp4,mkv,webm}` in flat split
folders, class folders or short-side-256 copies; files under `replacement/**` win over the
originals. Classes are the sorted label names of the labeled splits; unlabeled rows get -1.
"""
from __future__ import annotations

import csv
import io
import math
import os

from ..records import LayoutError, VideoRecord, make_key
from .layout import DatasetIndex, read_text

SPLIT_FILES = {"train": ("train.csv",), "val": ("val.csv", "validate.csv"), "test": ("test.csv",)}
VIDEO_EXTS = (".mp4", ".mkv", ".webm")
REQUIRED = ("youtube_id", "time_start", "time_end")
LABELLED = ("train", "val")   # their CSVs must have a `label` column and a label on every row
MAX_SECONDS = 999_999         # the file names hold times as six digits


def index_videos(root: str) -> dict[str, str]:
    """Video file stem -> path, for every video under root; `replacement/` copies take precedence."""
    found: dict[str, str] = {}
    replaced: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        is_replacement = rel == "replacement" or rel.startswith("replacement/")
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTS:
                continue
            target = replaced if is_replacement else found
            target.setdefault(stem, os.path.join(folder, name))
    found.update(replaced)
    return found


def _int_seconds(value: str, path: str, no: int, column: str) -> int:
    """A time column: a whole, finite number of seconds in 0..999999 ("12" or "12.0")."""
    try:
        seconds = float(value)
    except ValueError:
        raise LayoutError(f"{path}:{no}: column {column} must be a number, got {value!r}") from None
    if not math.isfinite(seconds) or seconds != int(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise LayoutError(f"{path}:{no}: column {column} must be a whole number of seconds from 0 to "
                          f"{MAX_SECONDS}, got {value!r}")
    return int(seconds)


def read_csv(path: str, split: str = "test") -> list[tuple[int, dict]]:
    """The rows of one annotation CSV (UTF-8, byte-order mark or not) as (line number, {column: text}); the
    training and validation lists must carry a `label` column and a label on every row."""
    text = read_text(path)
    try:
        return _rows(csv.reader(io.StringIO(text, newline="")), path, split)
    except csv.Error as e:
        raise LayoutError(f"{path}: not a readable CSV file ({e})") from None


def _rows(reader, path: str, split: str) -> list[tuple[int, dict]]:
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise LayoutError(f"{path}:1: empty file; expected the header label,youtube_id,time_start,time_end,split") \
            from None
    required = REQUIRED + (("label",) if split in LABELLED else ())
    missing = [c for c in required if c not in header]
    if missing:
        raise LayoutError(f"{path}:1: header {','.join(header)} lacks column(s) {', '.join(missing)}")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise LayoutError(f"{path}:1: header names column(s) {', '.join(twice)} twice")
    rows = []
    for row in reader:
        no = reader.line_num
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) != len(header):
            raise LayoutError(f"{path}:{no}: expected {len(header)} fields ({','.join(header)}), got {len(row)}")
        values = dict(zip(header, (x.strip() for x in row)))
        if split in LABELLED and not values["label"]:
            raise LayoutError(f"{path}:{no}: empty label in the {split} list (every {split} video needs its class)")
        rows.append((no, values))
    return rows


def read(root: str, dataset: str, splits: list[str] | None = None) -> DatasetIndex:
    ann = os.path.join(root, "annotations")
    if not os.path.isdir(ann):
        raise LayoutError(f"expected the {dataset.upper()} annotations at {ann}/{{train,val,test}}.csv, "
                          "but the folder does not exist")
    tables: dict[str, tuple[str, list]] = {}
    for split, names in SPLIT_FILES.items():
        if splits and split not in splits:
            continue
        path = next((os.path.join(ann, n) for n in names if os.path.isfile(os.path.join(ann, n))), None)
        if path is None:
            if splits or split == "train":
                raise LayoutError(f"expected {os.path.join(ann, names[0])}, but it does not exist")
            continue
        tables[split] = (path, read_csv(path, split))

    classes = sorted({row["label"] for _, rows in tables.values() for _, row in rows if row.get("label")})
    class_id = {c: i for i, c in enumerate(classes)}
    videos = index_videos(root)

    records = []
    for split, (path, rows) in tables.items():
        for no, row in rows:
            ytid = row["youtube_id"]
            if not ytid:
                raise LayoutError(f"{path}:{no}: empty youtube_id")
            if "/" in ytid or "\\" in ytid:
                raise LayoutError(f"{path}:{no}: youtube_id {ytid!r} holds a path separator")
            start = _int_seconds(row["time_start"], path, no, "time_start")
            end = _int_seconds(row["time_end"], path, no, "time_end")
            if end < start:
                raise LayoutError(f"{path}:{no}: time_end {end} is before time_start {start}")
            stem = f"{ytid}_{start:06d}_{end:06d}"
            file = videos.get(stem) or videos.get(ytid)
            cls = row.get("label", "")
            records.append(VideoRecord(
                dataset=dataset, video_id=ytid, split=split, label=class_id[cls] if cls else -1, class_name=cls,
                source_path=os.path.relpath(file, root).replace(os.sep, "/") if file else stem + ".mp4",
                path=file, key=make_key(stem), extras={"time_start": start, "time_end": end}))
    return DatasetIndex(dataset, classes, list(tables), records)
