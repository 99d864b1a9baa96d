"""HMDB51 as distributed: `<class>/<name>.avi` plus `testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`.

Split lines read `<name>.avi <0|1|2>` (1 train, 2 test, 0 unused), often with a trailing space. File
names contain `#`, `&`, parentheses and the like: they are used verbatim. Classes are the sorted
class names; the three official splits become manifest columns `split1..split3`.
"""
from __future__ import annotations

import os
import re

from ..records import LayoutError, VideoRecord
from .layout import DatasetIndex, read_lines, require

SPLIT = "all"
SPLITS_DIR = "testTrainMulti_7030_splits"
MEMBERSHIP = {"0": "unused", "1": "train", "2": "test"}
_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<k>[123])\.txt$")


def read(root: str) -> DatasetIndex:
    lists = require(os.path.join(root, SPLITS_DIR), f"the HMDB51 split lists ({SPLITS_DIR}/)")
    files: dict[str, dict[int, str]] = {}
    for name in sorted(os.listdir(lists)):
        m = _FILE.match(name)
        if m:
            files.setdefault(m.group("cls"), {})[int(m.group("k"))] = os.path.join(lists, name)
    if not files:
        raise LayoutError(f"expected files <class>_test_split1.txt .. _test_split3.txt in {lists}, found none")
    classes = sorted(files)
    for cls in classes:
        for k in (1, 2, 3):
            if k not in files[cls]:
                raise LayoutError(f"expected {os.path.join(lists, f'{cls}_test_split{k}.txt')}, "
                                  "but it does not exist")
        require(os.path.join(root, cls), f"the video folder of class {cls!r}")

    records = []
    for label, cls in enumerate(classes):
        member: dict[str, dict[int, str]] = {}
        for k in (1, 2, 3):
            path = files[cls][k]
            for no, line in read_lines(path):
                parts = line.rsplit(None, 1)
                if len(parts) != 2 or parts[1] not in MEMBERSHIP:
                    raise LayoutError(f"{path}:{no}: expected '<name>.avi <0|1|2>', got {line!r}")
                if "/" in parts[0] or "\\" in parts[0] or parts[0] in (".", ".."):
                    raise LayoutError(f"{path}:{no}: {parts[0]!r} is not a file name of the class folder "
                                      f"{cls}/ (no '/', no '..')")
                member.setdefault(parts[0], {})[k] = MEMBERSHIP[parts[1]]
        for name, splits in member.items():
            path = os.path.join(root, cls, name)
            records.append(VideoRecord(
                dataset="hmdb51", video_id=os.path.splitext(name)[0], split=SPLIT, label=label, class_name=cls,
                source_path=f"{cls}/{name}", path=path if os.path.isfile(path) else None,
                extras={f"split{k}": splits.get(k, "unused") for k in (1, 2, 3)}))
    records.sort(key=lambda r: r.key)
    return DatasetIndex("hmdb51", classes, [SPLIT], records)
