"""The `VideoRecord` every source yields, and the rules that turn a video id into a shard key."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_BAD = re.compile(r"[^A-Za-z0-9_-]+")
MAX_KEY = 80  # keeps tar member names inside a plain ustar header (100 bytes)


class LayoutError(ValueError):
    """The dataset root is not in the expected layout, or an annotation cannot be parsed."""


@dataclass
class VideoRecord:
    """One annotated video: where it is, which split and class it belongs to.

    `path` is the absolute file to read, or None when the annotation names a file that is not there
    (it then becomes a `missing` reject). `extras` holds the dataset-specific manifest columns.
    """

    dataset: str
    video_id: str
    split: str
    label: int
    class_name: str
    source_path: str          # as the annotation names it, relative to --root
    path: str | None
    key: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    reject: str | None = None  # set when the annotation alone already makes it a reject (missing, duplicate)

    def __post_init__(self):
        if not self.key:
            self.key = make_key(self.video_id)


def make_key(video_id: str) -> str:
    """A WebDataset-safe key: the id itself when it is already safe, else a cleaned id plus a short hash.

    The hash of the original id keeps keys unique when cleaning maps two ids onto one string.
    """
    if KEY_RE.match(video_id) and len(video_id) <= MAX_KEY:
        return video_id
    digest = hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:10]
    stem = _BAD.sub("_", video_id).strip("_")[: MAX_KEY - 11] or "v"
    return f"{stem}-{digest}"
