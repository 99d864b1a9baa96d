"""Tiny generated datasets in each official layout, for the tests and the demo.

Every video shows a coloured shape moving over a textured background; the colour, shape and
direction come from the class, so in `learnable=True` mode a tiny model trained from scratch can
tell the classes apart (class names spell the attributes: "RedCircleMovingLeft"). With
`quirks=True` the layouts also carry what real downloads carry: broken, zero-byte and
listed-but-missing files, quirky names, a portrait video, a clip shorter than 8 frames and a file
with an audio track. Each generator returns a `Synthetic` that says what a conversion must find.
"""
from __future__ import annotations

import itertools
import json
import os
import random
from dataclasses import dataclass, field

import av
import numpy as np

from shards.sources.ssv2 import class_of

COLOURS = {"Red": (220, 40, 40), "Green": (40, 200, 60), "Blue": (50, 90, 235), "Yellow": (235, 215, 40),
           "Purple": (165, 60, 210), "Cyan": (40, 205, 215), "White": (240, 240, 240), "Orange": (240, 140, 30)}
SHAPES = ("Square", "Circle", "Triangle", "Ring")
MOTIONS = {"Left": (-1, 0), "Right": (1, 0), "Up": (0, -1), "Down": (0, 1)}

UCF_NAMES = ["ApplyEyeMakeup", "HandstandPushups", "Basketball", "JumpRope", "PlayingGuitar", "YoYo",
             "Archery", "Biking", "Drumming", "Fencing"]
HMDB_NAMES = ["brush_hair", "cartwheel", "catch", "chew", "clap", "climb", "dive", "draw_sword"]
KINETICS_NAMES = ["abseiling", "air drumming", "passing American football (in game)", "playing cello",
                  "riding a bike", "yoga", "zumba", "tai chi"]
SSV2_TEMPLATES = ["Putting [something] on a surface", "Pushing [something] from left to right",
                  "Pushing [something] from right to left", "Moving [something] and [something] closer to each other",
                  "Holding [something]", "Turning [something] upside down"]


@dataclass
class Synthetic:
    """A generated dataset and what converting it must give."""

    root: str
    dataset: str
    classes: list[str]                                   # in label-id order
    annotated: dict[str, int] = field(default_factory=dict)          # split -> annotated videos
    rejects: dict[str, str] = field(default_factory=dict)             # video_id -> reason prefix
    portrait: set[str] = field(default_factory=set)
    short: set[str] = field(default_factory=set)                      # fewer than 8 frames
    audio: set[str] = field(default_factory=set)
    labels: dict[str, int] = field(default_factory=dict)              # video_id -> label (-1 unlabeled)

    @property
    def total(self) -> int:
        return sum(self.annotated.values())


def learnable_classes(n: int, seed: int = 0) -> list[str]:
    """`n` distinct CamelCase classes, each a (colour, shape, direction) triple."""
    combos = list(itertools.product(COLOURS, SHAPES, MOTIONS))
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} learnable classes")
    picked = random.Random(seed).sample(combos, n)
    return [f"{c}{s}Moving{m}" for c, s, m in picked]


def _style(class_index: int, name: str) -> tuple[tuple[int, int, int], str, tuple[int, int]]:
    """(colour, shape, direction) of a class: parsed from a learnable name, else derived from its index."""
    for c in COLOURS:
        for s in SHAPES:
            for m in MOTIONS:
                if name == f"{c}{s}Moving{m}":
                    return COLOURS[c], s, MOTIONS[m]
    colours = list(COLOURS.values())
    return (colours[class_index % len(colours)], SHAPES[(class_index // 2) % len(SHAPES)],
            list(MOTIONS.values())[class_index % len(MOTIONS)])


def render(class_index: int, name: str, rng: np.random.Generator, width: int, height: int,
           num_frames: int) -> np.ndarray:
    """Frames [T, H, W, 3] uint8: the class's shape in its colour, moving in its direction."""
    colour, shape, (dx, dy) = _style(class_index, name)
    yy, xx = np.mgrid[0:height, 0:width]
    tint = rng.integers(20, 70, size=3)
    texture = rng.integers(0, 25, size=(height // 4 + 1, width // 4 + 1, 1)).repeat(4, 0).repeat(4, 1)
    background = (texture[:height, :width] + tint).clip(0, 255).astype(np.uint8)
    r = max(3, int(min(width, height) * rng.uniform(0.16, 0.22)))
    speed = min(width, height) * rng.uniform(0.025, 0.04)
    cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
    jitter = rng.integers(-15, 16, size=3)
    fill = np.clip(np.array(colour) + jitter, 0, 255).astype(np.uint8)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        x = (cx + dx * speed * t) % width
        y = (cy + dy * speed * t) % height
        ox, oy = np.abs(xx - x), np.abs(yy - y)
        ox = np.minimum(ox, width - ox)        # wrap around the borders
        oy = np.minimum(oy, height - oy)
        if shape == "Square":
            mask = (ox <= r) & (oy <= r)
        elif shape == "Circle":
            mask = ox ** 2 + oy ** 2 <= r ** 2
        elif shape == "Ring":
            d = ox ** 2 + oy ** 2
            mask = (d <= r ** 2) & (d >= (0.55 * r) ** 2)
        else:  # triangle pointing up
            rel_y = (yy - y + r) % height
            rel_y = np.where(rel_y > 2 * r, 10 ** 6, rel_y)
            mask = (rel_y <= 2 * r) & (ox <= rel_y / 2)
        frame = background.copy()
        frame[mask] = fill
        frames[t] = frame
    return frames


def vp9_mp4(frames: np.ndarray, fps: int = 30, **options: str) -> bytes:
    """Frames (T x H x W x 3, uint8) as an in-memory VP9 stream in MP4, libvpx's realtime settings plus `options`
    (e.g. crf="10", g="8"): hand-made shard samples for tests and benchmarks."""
    import io

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libvpx-vp9", rate=fps, options={"deadline": "realtime", "cpu-used": "8", **options})
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def write_video(path: str, frames: np.ndarray, fps: int = 30, codec: str | None = None,
                audio: bool = False, rotation: int = 0) -> None:
    """Encode frames with PyAV; the container follows the file extension (.avi: MPEG-4, .webm: VP9, .mp4: H.264).

    `rotation` (MP4 only) stores the frames turned clockwise with a display matrix that turns them back
    counter-clockwise, as phones record portrait video.
    """
    if rotation:
        frames = np.ascontiguousarray(np.rot90(frames, k=-(rotation // 90), axes=(1, 2)))
    ext = os.path.splitext(path)[1].lower()
    codec = codec or {".avi": "mpeg4", ".webm": "libvpx-vp9", ".mkv": "libx264"}.get(ext, "libx264")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    t, h, w, _ = frames.shape
    with av.open(path, "w") as out:
        options = {"deadline": "realtime", "cpu-used": "8"} if codec == "libvpx-vp9" else {}
        if codec == "libx264":
            options = {"preset": "ultrafast"}
        stream = out.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 400_000
        astream = None
        if audio:
            acodec = {".webm": "libopus", ".avi": "mp2"}.get(ext, "aac")
            astream = out.add_stream(acodec, rate=48000 if acodec == "libopus" else 44100)
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = i
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
        if astream is not None:
            rate = astream.codec_context.sample_rate
            n = int(rate * t / fps)
            tone = (0.2 * np.sin(np.arange(n) * 2 * np.pi * 440 / rate) * 32767).astype(np.int16)
            fmt = astream.codec_context.format.name
            chunk = astream.codec_context.frame_size or 1024
            for start in range(0, n - chunk + 1, chunk):
                samples = tone[start:start + chunk]
                layout = "stereo" if astream.codec_context.layout.nb_channels == 2 else "mono"
                data = np.stack([samples] * (2 if layout == "stereo" else 1))
                af = av.AudioFrame.from_ndarray(data if "p" in fmt else data.T.reshape(1, -1).copy(),
                                                format="s16p" if "p" in fmt else "s16", layout=layout)
                af.sample_rate = rate
                af.pts = start
                for p in astream.encode(af):
                    out.mux(p)
            for p in astream.encode():
                out.mux(p)


def write_audio_only(path: str, seconds: float = 1.0) -> None:
    """A valid file with a sound track and no picture (container from the extension)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ext = os.path.splitext(path)[1].lower()
    with av.open(path, "w") as out:
        stream = out.add_stream({".webm": "libopus", ".avi": "mp2"}.get(ext, "aac"), rate=48000)
        ctx = stream.codec_context
        chunk = ctx.frame_size or 1024
        for start in range(0, int(48000 * seconds), chunk):
            silence = np.zeros((ctx.layout.nb_channels, chunk) if ctx.format.is_planar
                               else (1, chunk * ctx.layout.nb_channels), np.int16)
            frame = av.AudioFrame.from_ndarray(silence, format="s16p" if ctx.format.is_planar else "s16",
                                               layout=ctx.layout.name)
            frame.sample_rate, frame.pts = 48000, start
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)


def write_broken(path: str, seed: int = 0) -> None:
    """A file that starts like nothing FFmpeg knows: an unreadable container."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x00\x11garbage" + np.random.default_rng(seed).integers(0, 256, 3000, dtype=np.uint8).tobytes())


def write_corrupt(path: str, first_packet: int, seed: int = 0) -> None:
    """Overwrite the video packets from `first_packet` on with noise: the container opens, decoding fails midway."""
    with av.open(path) as c:
        spans = [(p.pos, p.size) for p in c.demux(video=0) if p.size and p.pos is not None]
    data = bytearray(open(path, "rb").read())
    rng = np.random.default_rng(seed)
    keep = 16 if path.endswith((".webm", ".mkv")) else 0
    for pos, size in spans[first_packet:]:
        # Matroska: keep the block header so the demuxer still finds every packet and the decoder fails
        lo, hi = pos + min(keep, size // 2), pos + size
        data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(data)


def write_empty(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def _crlf(path: str, lines: list[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write("".join(line + "\r\n" for line in lines))


def make_ucf101(root: str, *, num_classes: int = 4, groups: int = 4, clips: int = 1, width: int = 64,
                height: int = 48, num_frames: int = 36, fps: int = 30, quirks: bool = True,
                learnable: bool = False, seed: int = 0) -> Synthetic:
    """UCF101 layout: `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` and `ucfTrainTestlist/` (CRLF, 1-based ids).

    Groups follow the official scheme: split k tests on the groups g with (g-1) % 4 == k-1, so groups
    4, 8, ... are always train. With quirks, the second class is `HandstandPushups` whose files are
    spelled `v_HandStandPushups_*`, and the first videos carry the quirks listed in `_quirk`.
    """
    classes = learnable_classes(num_classes, seed) if learnable else _pick(UCF_NAMES, num_classes)
    if quirks and not learnable and "HandstandPushups" not in classes:
        classes[min(1, len(classes) - 1)] = "HandstandPushups"
    syn = Synthetic(root, "ucf101", classes)
    rng = np.random.default_rng(seed)
    train = {k: [] for k in (1, 2, 3)}
    test = {k: [] for k in (1, 2, 3)}
    n = 0
    for ci, cls in enumerate(classes):
        file_cls = "HandStandPushups" if cls == "HandstandPushups" else cls
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                stem = f"v_{file_cls}_g{g:02d}_c{c:02d}"
                rel = f"{cls}/{stem}.avi"
                path = os.path.join(root, "UCF-101", cls, stem + ".avi")
                kind, changes = _quirk(syn, n, stem) if quirks else (None, {})
                _emit(path, kind, changes, ci, cls, rng, width, height, num_frames, fps, n)
                n += 1
                syn.labels[stem] = ci
                for k in (1, 2, 3):
                    if (g - 1) % 4 == k - 1:
                        test[k].append(rel)
                    else:
                        train[k].append(f"{rel} {ci + 1}")
    lists = os.path.join(root, "ucfTrainTestlist")
    _crlf(os.path.join(lists, "classInd.txt"), [f"{i + 1} {c}" for i, c in enumerate(classes)])
    for k in (1, 2, 3):
        _crlf(os.path.join(lists, f"trainlist0{k}.txt"), train[k])
        _crlf(os.path.join(lists, f"testlist0{k}.txt"), test[k])
    syn.annotated = {"all": len(syn.labels)}
    return syn


def _pick(names: list[str], n: int) -> list[str]:
    if n <= len(names):
        return list(names[:n])
    return list(names) + [f"{names[0]}{i}" for i in range(len(names), n)]


def _quirk(syn: Synthetic, n: int, vid: str) -> tuple[str | None, dict]:
    """The n-th video's quirk, recorded in `syn`: 1 broken, 2 zero bytes, 3 listed but missing, 4 portrait,
    5 shorter than 8 frames, 6 with an audio track, 7 decode error midway, 9 no video stream (audio only)."""
    kind = {1: "broken", 2: "empty", 3: "missing"}.get(n)
    if kind:
        syn.rejects[vid] = "missing" if kind == "missing" else "unreadable container"
        return kind, {}
    if n == 4:
        syn.portrait.add(vid)
        return None, {"portrait": True}
    if n == 5:
        syn.short.add(vid)
        return None, {"short": True}
    if n == 6:
        syn.audio.add(vid)
        return None, {"audio": True}
    if n == 7:
        syn.rejects[vid] = "decode error at frame"
        return "corrupt", {}
    if n == 9:
        syn.rejects[vid] = "no video stream"
        return "novideo", {}
    return None, {}


def _emit(path: str, kind: str | None, changes: dict, ci: int, cls: str, rng, width, height, num_frames, fps,
          seed: int) -> None:
    if kind == "missing":
        return
    if kind == "novideo":
        write_audio_only(path, seconds=num_frames / fps)
    elif kind == "broken":
        write_broken(path, seed)
    elif kind == "empty":
        write_empty(path)
    else:
        w, h = (height, width) if changes.get("portrait") else (width, height)
        t = max(2, round(5 * fps / 30)) if changes.get("short") else num_frames  # under 8 frames once at 30 fps
        frames = render(ci, cls, rng, w, h, t)
        write_video(path, frames, fps, audio=changes.get("audio", False), rotation=changes.get("rotation", 0))
        if kind == "corrupt":
            write_corrupt(path, first_packet=num_frames // 3, seed=seed)


def make_hmdb51(root: str, *, num_classes: int = 3, per_class: int = 4, width: int = 64, height: int = 48,
                num_frames: int = 36, fps: int = 30, quirks: bool = True, seed: int = 0) -> Synthetic:
    """HMDB51 layout: `<class>/<name>.avi` and `testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`.

    Names carry `#`, `&` and parentheses; split lines end with a trailing space. Video v of a class is
    train (1) in split k when (v + k) % 3 != 0, else test (2); the last video of each class is unused (0) in split 3.
    """
    classes = sorted(_pick(HMDB_NAMES, num_classes))
    syn = Synthetic(root, "hmdb51", classes)
    rng = np.random.default_rng(seed)
    n = 0
    for ci, cls in enumerate(classes):
        lines = {1: [], 2: [], 3: []}
        for v in range(per_class):
            name = f"#{cls}_&_clip_(v{v})_f_nm_np1_fr_goo_{v}" if quirks and v % 2 == 0 else f"{cls}_clip_{v}_goo_{v}"
            path = os.path.join(root, cls, name + ".avi")
            kind, changes = _quirk(syn, n, name) if quirks else (None, {})
            _emit(path, kind, changes, ci, cls, rng, width, height, num_frames, fps, n)
            n += 1
            syn.labels[name] = ci
            for k in (1, 2, 3):
                flag = 0 if (k == 3 and v == per_class - 1) else (1 if (v + k) % 3 else 2)
                lines[k].append(f"{name}.avi {flag} ")
        for k in (1, 2, 3):
            path = os.path.join(root, "testTrainMulti_7030_splits", f"{cls}_test_split{k}.txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("\n".join(lines[k]) + "\n")
    syn.annotated = {"all": len(syn.labels)}
    return syn


def make_kinetics(root: str, *, dataset: str = "k400", num_classes: int = 3, per_class: int = 3, test: int = 2,
                  width: int = 64, height: int = 48, num_frames: int = 36, fps: int = 30, quirks: bool = True,
                  seed: int = 0) -> Synthetic:
    """CVDF Kinetics layout: `annotations/{train,val,test}.csv` and `{ytid}_{start:06d}_{end:06d}.mp4` files.

    Train videos sit in class folders, val videos in a flat folder, test videos (unlabeled) under
    `test/`. With quirks: an `is_cc` column, a `.mkv` and a `.webm` file, a phone video (coded landscape,
    shown portrait through its display matrix), a corrupt original whose good copy lives under
    `replacement/`, plus the broken/missing/odd files.
    """
    classes = sorted(_pick(KINETICS_NAMES, num_classes))
    syn = Synthetic(root, dataset, classes)
    rng = np.random.default_rng(seed)
    header = "label,youtube_id,time_start,time_end,split" + (",is_cc" if quirks else "")
    n = 0
    for split in ("train", "val", "test"):
        rows = [header]
        count = 0
        todo = [(ci, c) for ci, c in enumerate(classes) for _ in range(per_class if split == "train" else 1)]
        if split == "test":
            todo = [(-1, "")] * test
        for j, (ci, cls) in enumerate(todo):
            ytid = f"{split[:2]}{'-' if j % 2 else '_'}Yt{j:03d}x{ci + 1}"[:11].ljust(11, "Q")
            start = 10 * j
            stem = f"{ytid}_{start:06d}_{start + 10:06d}"
            folder = {"train": os.path.join("train", cls), "val": "val", "test": "test"}[split]
            ext = ".mp4"
            if quirks and split == "val" and j == 0:
                ext = ".mkv"
            if quirks and split == "val" and j == 1:
                ext = ".webm"
            path = os.path.join(root, folder, stem + ext)
            kind, changes = _quirk(syn, n, ytid) if quirks and split == "train" else (None, {})
            if quirks and split == "val" and j == 2:   # a phone video: coded landscape, displayed portrait
                changes = {"portrait": True, "rotation": 90}
                syn.portrait.add(ytid)
            _emit(path, kind, changes, max(ci, 0), cls or "unlabeled", rng, width, height, num_frames, fps, n)
            if quirks and split == "train" and n == 8:  # corrupt original, good copy under replacement/
                write_broken(path, n)
                write_video(os.path.join(root, "replacement", "replacement_for_corrupted_k400", stem + ".mp4"),
                            render(ci, cls, rng, width, height, num_frames), fps)
            n += 1
            count += 1
            syn.labels[ytid] = ci
            label = f'"{cls}"' if "," in cls or "(" in cls else cls
            rows.append(f"{label},{ytid},{start},{start + 10},{split}" + (",0" if quirks else ""))
        path = os.path.join(root, "annotations", f"{split}.csv")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("\n".join(rows) + "\n")
        syn.annotated[split] = count
    return syn


def make_ssv2(root: str, *, num_classes: int = 4, train: int = 8, val: int = 3, test: int = 2, width: int = 64,
              height: int = 48, num_frames: int = 24, fps: int = 12, quirks: bool = True,
              seed: int = 0, download_names: bool = False) -> Synthetic:
    """SSv2 layout: `20bn-something-something-v2/<id>.webm` (VP9) and `labels/*.json`.

    `download_names` uses the `something-something-v2-*.json` names instead of `labels/{...}.json`.
    Templates carry brackets, placeholders are filled; SSv2's native 12 fps exercises the fps change.
    """
    templates = SSV2_TEMPLATES[:num_classes]
    classes = [class_of(t) for t in templates]
    syn = Synthetic(root, "ssv2", classes)
    rng = np.random.default_rng(seed)
    videos = os.path.join(root, "20bn-something-something-v2")
    lists = {}
    n = 0
    vid = 1000
    for split, count in (("train", train), ("val", val), ("test", test)):
        entries = []
        for j in range(count):
            vid += 1
            ci = n % num_classes  # every class gets videos in every split
            kind, changes = _quirk(syn, n, str(vid)) if quirks and split == "train" else (None, {})
            _emit(os.path.join(videos, f"{vid}.webm"), kind, changes, ci, classes[ci], rng, width, height,
                  num_frames, fps, n)
            n += 1
            if split == "test":
                entries.append({"id": str(vid)})
                syn.labels[str(vid)] = -1
            else:
                t = templates[ci]
                things = ["a cup", "a pen"][: t.count("[")]
                label = t
                for th in things:
                    label = label.replace("[something]", th, 1)
                entries.append({"id": str(vid), "label": label.lower(), "template": t, "placeholders": things})
                syn.labels[str(vid)] = ci
        lists[split] = entries
        syn.annotated[split] = count
    names = {"labels": "labels", "train": "train", "val": "validation", "test": "test"}
    folder = root if download_names else os.path.join(root, "labels")
    os.makedirs(folder, exist_ok=True)
    os.makedirs(videos, exist_ok=True)
    payload = {"labels": {c: str(i) for i, c in enumerate(classes)}, **lists}
    for key, stem in names.items():
        fname = f"something-something-v2-{stem}.json" if download_names else f"{stem}.json"
        with open(os.path.join(folder, fname), "w") as f:
            json.dump(payload[key], f, indent=1)
    return syn
