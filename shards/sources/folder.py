"""Your own videos: one folder per class, the way people keep them.

    ROOT/<class name>/<video>                   every video in split `train`; with a test fraction, that share of
                                                each class's videos (seeded) goes to split `test`
    ROOT/train/<class name>/<video>             the split chosen by the folder
    ROOT/test/<class name>/<video>

A class name is its folder name (`ApplyEyeMakeup`, `riding_a_bike`, `riding a bike` all work); the prompt text
follows the rule of the published lists (model.prompts / shards.protocols.names.readable_name: CamelCase and
underscores become words). Classes are the sorted folder names; in the train/test layout a class may miss from
one split, but every class needs a folder in `train`. Videos are files with a video extension (pipeline.files),
found recursively under their class folder; anything else is ignored and counted in the log. A video's id is its
path under the class folder, so two files of the same name in different classes are different videos.

The test share is drawn per class by the seeded hash rank of shards.protocols.core (the same draw on every machine,
and stable when videos are added): round(fraction x n) videos, at least one when the fraction is above 0 and the
class has two videos or more.
"""
from __future__ import annotations

import logging
import os

from ..protocols.core import rank
from ..records import LayoutError, VideoRecord
from .layout import VIDEO_EXTENSIONS, DatasetIndex

log = logging.getLogger(__name__)
SPLITS = ("train", "test")


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith(".")


def _videos(folder: str) -> tuple[list[str], int]:
    """Video paths under `folder` (relative, '/'-separated, sorted) and the number of other files."""
    found, other = [], 0
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            if _is_video(f):
                found.append(os.path.relpath(os.path.join(here, f), folder).replace(os.sep, "/"))
            else:
                other += 1
    return sorted(found), other


def _class_folders(root: str) -> list[str]:
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))


def read(root: str, test_fraction: float | None = None, seed: int = 0) -> DatasetIndex:
    """Index ROOT in either layout (see the module docstring)."""
    top = _class_folders(root)
    split_layout = "train" in top and set(top) <= set(SPLITS)
    if split_layout and test_fraction:
        raise LayoutError(f"{root} has train/ and test/ folders, which already choose each video's split; "
                          f"--test-fraction is for ROOT/<class>/<video>")
    if test_fraction is not None and not 0 <= test_fraction < 1:
        raise LayoutError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    layout = {s: os.path.join(root, s) for s in SPLITS if s in top} if split_layout else {"train": root}
    classes = _class_folders(layout["train"])
    if not classes:
        raise LayoutError(f"expected class folders in {layout['train']} (ROOT/<class name>/<video> or "
                          f"ROOT/train/<class name>/<video>), found none")
    class_id = {c: i for i, c in enumerate(classes)}
    records, ignored = [], 0
    for split, folder in layout.items():
        for cls in _class_folders(folder):
            if cls not in class_id:
                raise LayoutError(f"{os.path.join(folder, cls)}: class {cls!r} has no folder in "
                                  f"{layout['train']}; every class needs training videos")
            videos, other = _videos(os.path.join(folder, cls))
            ignored += other
            if not videos:
                raise LayoutError(f"{os.path.join(folder, cls)}: no video files (expected e.g. .mp4, .avi, .webm)")
            chosen = _test_share(videos, cls, test_fraction or 0.0, seed) if split == "train" else set()
            for rel in videos:
                video_id = f"{cls}/{os.path.splitext(rel)[0]}"
                source = os.path.relpath(os.path.join(folder, cls, rel), root).replace(os.sep, "/")
                records.append(VideoRecord(
                    dataset="folder", video_id=video_id, split="test" if rel in chosen else split,
                    label=class_id[cls], class_name=cls, source_path=source,
                    path=os.path.join(folder, cls, *rel.split("/"))))
    if ignored:
        log.info("%s: %d file(s) without a video extension ignored", root, ignored)
    outside = sorted(f for folder in layout.values() for f in os.listdir(folder)
                     if os.path.isfile(os.path.join(folder, f)) and _is_video(f))
    if outside:
        log.warning("%s: %d video(s) outside a class folder are not part of the dataset (e.g. %s); move them into "
                    "ROOT/<class name>/", root, len(outside), outside[0])
    splits = [s for s in SPLITS if any(r.split == s for r in records)]
    records.sort(key=lambda r: r.key)
    return DatasetIndex("folder", classes, splits, records)


def _test_share(videos: list[str], cls: str, fraction: float, seed: int) -> set[str]:
    """The class's test videos: the round(fraction x n) (at least 1 when n >= 2) with the lowest seeded rank."""
    if fraction <= 0 or len(videos) < 2:
        return set()
    n = min(max(1, round(fraction * len(videos))), len(videos) - 1)
    return set(sorted(videos, key=lambda v: rank(seed, "folder/test", f"{cls}/{v}"))[:n])
