"""What users hand to the model-side tools (tools/predict.py, convert_weights.py, class_similarity.py,
pretrain_clip.py, model/average.py), checked where it enters, before any model is loaded.

- Command-line numbers: argparse types (`positive_int`, `count`, `positive_float`) that refuse 0, negatives,
  nan, inf and words, so argparse reports ``argument --top-k: must be at least 1, got '0'`` with exit status 2.
- Video sources: local files, folders, globs and s3:// URLs. Any other URL (http://, gs://, ...) is refused at
  once; frostline never waits out a retry budget on a source it cannot read. A local name that matches nothing
  and a folder without videos are errors before the model loads (a typo costs seconds, not a model load).
- Text files (label lists): UTF-8, with or without a byte-order mark; anything else names the file.
- Output files: their folder must exist before the work starts.

Failures are `InputError` (a ValueError of frostline's): `shards.cli.run` prints them as one line, exit 2.
"""
from __future__ import annotations

import argparse
import math
import os

from shards.cli import whole_number

REMOTE_SCHEMES = ("s3",)      # read through shards.storage, with its retry budget


class InputError(ValueError):
    """A command-line value, file or source that the model-side tools cannot use; the message names it."""


# --------------------------------------------------------------------------------------------- argparse types
at_least = whole_number     # an argparse type: a whole number >= low (and <= high); shards.cli's, shared by every tool
positive_int = at_least(1)    # counts of things that must exist: --top-k, --views, --batch-size, --steps
count = at_least(0)           # counts that may be zero


def positive_float(text: str) -> float:
    """A finite number above 0 (a learning rate, a size)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


# ------------------------------------------------------------------------------------------------ video sources
def check_source(item: str) -> None:
    """Refuse at once a URL that frostline cannot read (only s3:// is read remotely)."""
    if "://" in item:
        scheme = item.split("://", 1)[0].lower()
        if scheme not in REMOTE_SCHEMES and scheme != "file":
            raise InputError(f"{item}: frostline reads local files and s3:// URLs, not {scheme}:// (download the "
                             f"video first)")


def video_sources(items: list[str]) -> list[str]:
    """The videos that `items` (files, globs, folders, s3:// URLs or prefixes) name, in order (see
    pipeline.files.expand_inputs); a name that matches nothing or a folder without videos is an InputError naming
    it. Videos that exist but cannot be decoded are left to the caller (reported per video)."""
    from pipeline.files import VIDEO_EXTENSIONS, expand_inputs
    from shards.storage import is_remote
    videos, missing = [], []
    for item in items:
        check_source(item)
        found = expand_inputs([item])
        if not found and os.path.isdir(item):
            raise InputError(f"{item}: a folder without video files ({', '.join(VIDEO_EXTENSIONS)})")
        missing += [v for v in found if not is_remote(v) and not os.path.exists(v.removeprefix("file://"))]
        videos += found
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise InputError(f"{', '.join(missing[:3])}{more}: no such file")
    return videos


# --------------------------------------------------------------------------------------------------- files
def read_text_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark is dropped); another encoding is an InputError."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        hint = " (it looks like UTF-16: save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise InputError(f"{path}: not UTF-8 text: byte {data[e.start]:#04x} at offset {e.start}{hint}") from None
    return text.splitlines()


def check_output_file(path: str, what: str = "output") -> None:
    """An output file can be written there: its folder exists and the path is not a folder."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder; the {what} needs a file name")
    if not os.path.isdir(folder):
        raise InputError(f"{path}: the folder {folder} does not exist (create it first)")


def check_output_folder(path: str, what: str = "output") -> None:
    """An output folder can be made there: the path is not a file."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{path}: is a file; the {what} needs a folder")
