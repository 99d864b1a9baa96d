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
    """A label file: JSON in UTF-8 (a byte-order mark, or UTF-16/32 with one, is read as such)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise LayoutError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise LayoutError(f"{path}: byte {e.object[e.start]:#04x} at offset {e.start} is not UTF-8 text; the label "
                          "files are UTF-8 JSON") from None
    except (ValueError, RecursionError) as e:
        raise LayoutError(f"{path}: not readable JSON ({str(e).splitlines()[0][:120]})") from None


def _text(value, where: str, what: str) -> str:
    """A string field of a label file; `null`, numbers or lists where text belongs are errors naming the entry."""
    if not isinstance(value, str):
        raise LayoutError(f"{where}: {what} must be a string, got {json.dumps(value)[:60]}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise LayoutError(f"{where}: {what} {value!r} is not valid Unicode text (a lone surrogate)") from None
    return value


def _video_id(value, where: str) -> str:
    """An entry's `id`: a string or integer naming `<id>.webm` in the video folder (no path separators)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise LayoutError(f"{where}: 'id' must be a string or integer, got {json.dumps(value)[:60]}")
    vid = _text(str(value), where, "'id'").strip()
    if not vid or "/" in vid or "\\" in vid or vid in (".", ".."):
        raise LayoutError(f"{where}: 'id' {vid!r} is not a file name in {VIDEOS}/")
    return vid


def _class_ids(raw, path: str) -> dict[str, int]:
    """labels.json: {class name: id}, ids as integers or digit strings ("0"), 0..N-1 without gaps."""
    if not isinstance(raw, dict):
        raise LayoutError(f"{path}: expected an object mapping class name to id")
    ids = {}
    for name, i in raw.items():
        _text(name, f"{path} class {name!r}", "the class name")
        if isinstance(i, str) and i.strip().isascii() and i.strip().isdigit():
            i = int(i)
        if isinstance(i, bool) or not isinstance(i, int):
            raise LayoutError(f"{path}: class {name!r}: id must be an integer, got {json.dumps(i)[:60]}")
        ids[name] = i
    if sorted(ids.values()) != list(range(len(ids))):
        raise LayoutError(f"{path}: class ids must be 0..{len(ids) - 1} without gaps")
    return ids


def _placeholders(value, where: str) -> list[str]:
    """An entry's `placeholders`: a list of strings (absent or `null`: none)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise LayoutError(f"{where}: 'placeholders' must be a list of strings, got {json.dumps(value)[:60]}")
    return [_text(p, where, "each placeholder") for p in value]


def read(root: str, splits: list[str] | None = None) -> DatasetIndex:
    videos = os.path.join(root, VIDEOS)
    if not os.path.isdir(videos):
        raise LayoutError(f"expected the SSv2 videos at {videos}/<id>.webm, but the folder does not exist")
    labels_path = find_label_file(root, "labels")
    if labels_path is None:
        raise LayoutError(f"expected the SSv2 class list at {os.path.join(root, 'labels', 'labels.json')} "
                          "(or something-something-v2-labels.json), but it does not exist")
    ids = _class_ids(_load_json(labels_path), labels_path)
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
            vid = _video_id(e["id"], where)
            where = f"{where} (id {vid})"
            template = e.get("template")
            if template is not None:
                template = _text(template, where, "'template'")
            if template is None and split != "test":
                raise LayoutError(f"{where}: no 'template' (every {split} video needs its class; only test "
                                  "entries are unlabelled)")
            if template is None:
                label, cls = -1, ""
            else:
                cls = by_lower.get(class_of(template).lower())
                if cls is None:
                    raise LayoutError(f"{where}: class {class_of(template)!r} is not in {labels_path}")
                label = ids[cls]
            fname = present.get(vid)
            records.append(VideoRecord(
                dataset="ssv2", video_id=vid, split=split, label=label, class_name=cls,
                source_path=f"{VIDEOS}/{fname or vid + '.webm'}",
                path=os.path.join(videos, fname) if fname else None,
                extras={"template": template or "", "placeholders": _placeholders(e.get("placeholders"), where)}))
    return DatasetIndex("ssv2", classes, split_names, records)
