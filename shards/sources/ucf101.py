"""UCF101 as distributed: `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` plus `ucfTrainTestlist/`.

The three official splits become manifest columns `split1..split3` ("train" / "test"), so every
video is stored once (shard split "all"). Class ids are `classInd.txt`'s, made 0-based. File names
may spell the class in another case than the folder (`HandstandPushups/v_HandStandPushups_*`), so
files are matched ignoring case when the exact name is not there.
"""
from __future__ import annotations

import os
import re

from ..records import LayoutError, VideoRecord
from .layout import DatasetIndex, case_insensitive, check_relative, read_lines, require

SPLIT = "all"
_NUMBER = re.compile(r"^[0-9]{1,9}$")


def read_class_ind(path: str) -> list[str]:
    """`classInd.txt` ("1 ApplyEyeMakeup", 1-based, CRLF) -> class names by 0-based id."""
    by_id: dict[int, str] = {}
    for no, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not _NUMBER.match(parts[0]):
            raise LayoutError(f"{path}:{no}: expected '<id> <ClassName>', got {line!r}")
        if int(parts[0]) in by_id:
            raise LayoutError(f"{path}:{no}: class id {parts[0]} is listed twice")
        by_id[int(parts[0])] = parts[1]
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        raise LayoutError(f"{path}: class ids must be 1..{len(by_id)} without gaps")
    return [by_id[i] for i in range(1, len(by_id) + 1)]


def read(root: str) -> DatasetIndex:
    lists = require(os.path.join(root, "ucfTrainTestlist"), "the UCF101 split lists (ucfTrainTestlist/)")
    videos = require(os.path.join(root, "UCF-101"), "the UCF101 videos (UCF-101/<Class>/*.avi)")
    classes = read_class_ind(require(os.path.join(lists, "classInd.txt"), "the class list classInd.txt"))
    class_id = {c: i for i, c in enumerate(classes)}
    class_by_lower = {c.lower(): c for c in classes}

    entries: dict[str, dict] = {}  # lower-cased list path -> entry
    for k in (1, 2, 3):
        for kind in ("train", "test"):
            path = require(os.path.join(lists, f"{kind}list0{k}.txt"), f"the split list {kind}list0{k}.txt")
            for no, line in read_lines(path):
                parts = line.split()
                if len(parts) not in (1, 2) or "/" not in parts[0]:
                    raise LayoutError(f"{path}:{no}: expected '<Class>/<file>.avi [<id>]', got {line!r}")
                rel = check_relative(parts[0], f"{path}:{no}")
                folder = rel.split("/", 1)[0]
                name = class_by_lower.get(folder.lower())
                if name is None:
                    raise LayoutError(f"{path}:{no}: class {folder!r} is not in classInd.txt")
                if len(parts) == 2:
                    if not _NUMBER.match(parts[1]):
                        raise LayoutError(f"{path}:{no}: class id {parts[1]!r} is not an integer")
                    if int(parts[1]) - 1 != class_id[name]:
                        raise LayoutError(f"{path}:{no}: class id {parts[1]} does not match the folder "
                                          f"{folder!r} (classInd.txt gives {class_id[name] + 1})")
                e = entries.setdefault(rel.lower(), {"rel": rel, "class": name, "member": {}})
                e["member"][k] = kind

    cache: dict = {}
    records = []
    for e in entries.values():
        rel = e["rel"]
        path = os.path.join(videos, *rel.split("/"))
        if not os.path.isfile(path):
            folder, fname = os.path.split(path)
            real_folder = case_insensitive(videos, os.path.basename(folder), cache)
            path = case_insensitive(real_folder, fname, cache) if real_folder else None
        stem = os.path.splitext(os.path.basename(path or rel))[0]
        source = os.path.relpath(path, root).replace(os.sep, "/") if path else "UCF-101/" + rel
        records.append(VideoRecord(
            dataset="ucf101", video_id=stem, split=SPLIT, label=class_id[e["class"]], class_name=e["class"],
            source_path=source, path=path,
            extras={f"split{k}": e["member"].get(k, "unused") for k in (1, 2, 3)}))
    records.sort(key=lambda r: r.key)
    return DatasetIndex("ucf101", classes, [SPLIT], records)
