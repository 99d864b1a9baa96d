"""Something-Something v2 as distributed: `20bn-something-something-v2/<id>.webm` plus `labels/*.json`.

The label files are `labels/{labels,train,validation,test}.json` or the
`something-something-v2-*.json` names of the download. A video's class is its template with the
brackets removed ("Putting [something] on a surface" -> "Putting something on a surface"); its id
is `labels.json`'s. Test entries carry no template: they are unlabeled (-1). Split names are
`train`, `val` (from validation.json) and `test`.
"""
from __future__ import annotations

import json
import os

from ..records import LayoutError, VideoRecord
from .layout import DatasetIndex

VIDEOS = "20bn-something-something-v2"
FILES = {"labels": "labels", "train": "train", "val": "validation", "test": "test"}


def find_label_file(root: str, stem: str) -> str | None:
    for folder in (os.path.join(root, "labels"), root):
        for name in (f"{stem}.json", f"something-something-v2-{stem}.json"):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def class_of(template: str) -> str:
    """`Putting [something] on [something]` -> `Putting something on something` (labels.json's name)."""
    return template.replace("[", "").replace("]", "")


def _load_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise LayoutError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def read(root: str, splits: list[str] | None = None) -> DatasetIndex:
    videos = os.path.join(root, VIDEOS)
    if not os.path.isdir(videos):
        raise LayoutError(f"expected the SSv2 videos at {videos}/<id>.webm, but the folder does not exist")
    labels_path = find_label_file(root, "labels")
    if labels_path is None:
        raise LayoutError(f"expected the SSv2 class list at {os.path.join(root, 'labels', 'labels.json')} "
                          "(or something-something-v2-labels.json), but it does not exist")
    raw = _load_json(labels_path)
    if not isinstance(raw, dict):
        raise LayoutError(f"{labels_path}: expected an object mapping class name to id")
    try:
        ids = {name: int(i) for name, i in raw.items()}
    except (TypeError, ValueError):
        raise LayoutError(f"{labels_path}: class ids must be integers") from None
    if sorted(ids.values()) != list(range(len(ids))):
        raise LayoutError(f"{labels_path}: class ids must be 0..{len(ids) - 1} without gaps")
    classes = [None] * len(ids)
    for name, i in ids.items():
        classes[i] = name
    by_lower = {c.lower(): c for c in classes}

    present = {os.path.splitext(n)[0]: n for n in os.listdir(videos)}
    records, split_names = [], []
    for split, stem in FILES.items():
        if split == "labels" or (splits and split not in splits):
            continue
        path = find_label_file(root, stem)
        if path is None:
            if split == "test" and not splits:
                continue  # the test list is optional unless asked for
            raise LayoutError(f"expected {os.path.join(root, 'labels', stem + '.json')} "
                              f"(or something-something-v2-{stem}.json), but it does not exist")
        split_names.append(split)
        entries = _load_json(path)
        if not isinstance(entries, list):
            raise LayoutError(f"{path}: expected a list of {{id, label, template, placeholders}} entries")
        for n, e in enumerate(entries):
            where = f"{path} entry {n}"
            if not isinstance(e, dict) or "id" not in e:
                raise LayoutError(f"{where}: expected an object with an 'id', got {str(e)[:80]!r}")
            vid = str(e["id"])
            template = e.get("template")
            if template is None:
                label, cls = -1, ""
            else:
                cls = by_lower.get(class_of(template).lower())
                if cls is None:
                    raise LayoutError(f"{where} (id {vid}): class {class_of(template)!r} is not in {labels_path}")
                label = ids[cls]
            fname = present.get(vid)
            records.append(VideoRecord(
                dataset="ssv2", video_id=vid, split=split, label=label, class_name=cls,
                source_path=f"{VIDEOS}/{fname or vid + '.webm'}",
                path=os.path.join(videos, fname) if fname else None,
                extras={"template": template or "", "placeholders": [str(p) for p in e.get("placeholders", [])]}))
    return DatasetIndex("ssv2", classes, split_names, records)
