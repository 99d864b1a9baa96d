"""What every layout reader shares: the `DatasetIndex` it returns and the file helpers for annotation lists."""
from __future__ import annotations

import codecs
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


# files that are videos wherever a layout does not name them (folder datasets, tools/predict.py's folders)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv",
                    ".3gp", ".ts")


def read_text(path: str) -> str:
    """A text annotation file as published: UTF-8, with or without a byte-order mark (also UTF-16 with its mark,
    as some editors save). Any other byte is an error naming the file, line and column; a NUL byte too."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise LayoutError(f"{path}: starts with a UTF-16 byte-order mark but is not UTF-16 text ({e.reason})") \
                from None
    else:
        body = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            line, col = _position(body[:e.start])
            raise LayoutError(f"{path}:{line}:{col}: byte {body[e.start]:#04x} is not UTF-8 text; the annotation "
                              "files are UTF-8 (save the file as UTF-8)") from None
    if "\0" in text:
        line, col = _position(text[:text.index("\0")].encode())
        raise LayoutError(f"{path}:{line}:{col}: a NUL character; this is not a text file")
    return text


def _position(before: bytes) -> tuple[int, int]:
    """(line, column), 1-based, of the byte after `before`."""
    lines = before.split(b"\n")
    return len(lines), len(lines[-1]) + 1


def read_lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a text file; CRLF, LF and CR all work."""
    lines = read_text(path).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [(no, line.strip()) for no, line in enumerate(lines, start=1) if line.strip()]


def check_relative(rel: str, where: str) -> str:
    """A path an annotation names, relative to --root: no absolute path, no `..`, no empty part; else an error
    naming `where` (the file and line)."""
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith(("/", "\\")) or any(p in ("", ".", "..") for p in parts):
        raise LayoutError(f"{where}: path {rel!r} leaves --root or is not a plain relative path "
                          "(an absolute path, '..', '.' or an empty part)")
    return rel


def check_record(root: str, r: VideoRecord) -> None:
    """What every source must hand on: the video inside --root, and text that UTF-8 can store."""
    if r.path is not None:
        inside = os.path.normpath(os.path.join(root, r.path))
        if os.path.commonpath([root, inside]) != root:
            raise LayoutError(f"{r.source_path}: the annotation of {r.video_id!r} names a file outside --root {root}")
    for what, value in (("video id", r.video_id), ("class name", r.class_name), ("file name", r.source_path)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LayoutError(f"{os.path.join(root, _shown(r.source_path))}: the {what} '{_shown(value)}' is not "
                              "valid UTF-8 text (rename the file or folder, or fix the annotation)") from None


def _shown(text: str) -> str:
    """`text` as printable ASCII, with the bytes a file name held that UTF-8 cannot decode as `\\xe9` escapes."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("ascii", "backslashreplace")


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
