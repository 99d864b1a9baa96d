"""A generated captioned world: objects whose every attribute text can name, in images and videos.

A `Scene` fixes what is drawn: colour, shape, size, pattern, count, background, motion and speed (positions come
from the scene's own seed). `render` draws it with numpy on a small canvas, deterministically:

- objects move on a torus (leaving one edge, they come back on the other), spin, grow, shrink, or fade in/out;
- with `afterimage=True` (the default) every moving object leaves an *afterimage*: a fading trail (filled copies
  of where it was 2, 4 and 6 frames earlier, under the object, `TRAIL`) and the outlines of where it was 3 and 6
  frames earlier, over the frame (`GHOSTS`), so a single frame shows direction, spin and growth. Without it a
  frame shows no trace of motion: moving left at time t is, pixel for pixel, moving right at time -t.

`captions(scene, frame)` describes one rendered frame with a varied grammar (phrasings, synonyms, word orders,
attributes mentioned or left out); it names a motion only when the frame shows it.

The base-to-novel experiment's classes (`BASE_CLASSES`, `NOVEL_CLASSES`): eight base classes share one static look
(a red square) and differ only in motion, which a frame shows only through its afterimage and a CLIP pre-trained
without afterimages never saw; their names leave the colour out ('square moving left'). Eight novel classes have
eight colours no base class has (all spinning), which pre-training grounded and base training teaches the model to
look past. `make_b2n_ucf101` writes such a dataset in UCF101's official layout plus FROSTER's published split-file
layout (`zs_label_db/B2N_ucf101/`, and with `val_groups` a validation copy), so an experiment runs through
make_shards -> make_splits -> DALI -> model/train.py.
"""
from __future__ import annotations

import itertools
import os
import random
from dataclasses import dataclass, field, replace

import numpy as np

COLOURS = {"red": (215, 35, 35), "green": (35, 190, 55), "blue": (45, 85, 235), "yellow": (235, 215, 35),
           "purple": (160, 55, 205), "orange": (240, 135, 25), "white": (240, 240, 240), "cyan": (35, 205, 215),
           "pink": (250, 140, 200)}
SHAPES = ("square", "circle", "triangle", "diamond", "cross", "ring")
PLURAL = {"square": "squares", "circle": "circles", "triangle": "triangles", "diamond": "diamonds",
          "cross": "crosses", "ring": "rings"}
SIZES = {"small": 0.15, "big": 0.23}                     # radius as a fraction of the canvas' shorter side
PATTERNS = ("plain", "striped", "dotted")
COUNTS = (1, 2, 3)
BACKGROUNDS = {"black": (14, 14, 18), "grey": (105, 105, 105), "brown": (95, 62, 30)}
MOTIONS = ("moving left", "moving right", "moving up", "moving down", "spinning", "growing", "shrinking",
           "appearing", "disappearing")
SPEEDS = {"slowly": 0.5, "quickly": 3.0}                 # pixels (or their equivalent) per frame
DIRECTIONS = {"moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1), "moving down": (0, 1)}
POSITIONS = ("left", "right", "top", "bottom", "middle")
GHOSTS = ((3, 0.55), (6, 0.3))                           # afterimage outlines: (frames ago, opacity)
TRAIL = ((2, 0.45), (4, 0.3), (6, 0.15))                 # afterimage trail, filled, under the object: (ago, opacity)
STRIPE = 3                                               # pattern period in pixels
# motions a single frame shows (through the afterimage); fading in and out look alike in one frame
VISIBLE_IN_A_FRAME = ("moving left", "moving right", "moving up", "moving down", "spinning", "growing", "shrinking")


@dataclass(frozen=True)
class Scene:
    """Everything a caption can say about a clip; `seed` places the objects."""
    colour: str
    shape: str
    motion: str
    size: str = "big"
    pattern: str = "plain"
    count: int = 1
    background: str = "black"
    speed: str = "quickly"
    seed: int = 0
    afterimage: bool = True                  # False: a frame shows no trace of motion (only the clip does)

    def __post_init__(self):
        for value, allowed in ((self.colour, COLOURS), (self.shape, SHAPES), (self.motion, MOTIONS),
                               (self.size, SIZES), (self.pattern, PATTERNS), (self.count, COUNTS),
                               (self.background, BACKGROUNDS), (self.speed, SPEEDS)):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {list(allowed)}")


def sample_scene(rng: random.Random, *, colours=COLOURS, shapes=SHAPES, motions=MOTIONS) -> Scene:
    """A random scene (nuisance attributes uniform) from the given colours, shapes and motions."""
    return Scene(colour=rng.choice(list(colours)), shape=rng.choice(list(shapes)), motion=rng.choice(list(motions)),
                 size=rng.choice(list(SIZES)), pattern=rng.choice(PATTERNS), count=rng.choice(COUNTS),
                 background=rng.choice(list(BACKGROUNDS)), speed=rng.choice(list(SPEEDS)),
                 seed=rng.randrange(2 ** 31))


# ------------------------------------------------------------------------------------------------------ rendering
@dataclass
class Rendered:
    """A rendered clip and the ground truth the tests check captions against."""
    frames: np.ndarray                       # [T, H, W, 3] uint8
    masks: np.ndarray                        # [T, H, W] bool: pixels showing an object in full, unpatterned colour
    centres: np.ndarray                      # [T, count, 2] (x, y) object centres
    radii: np.ndarray                        # [T] object radius in pixels
    opacity: np.ndarray                      # [T] object opacity (fading in/out)
    placed: int                              # objects actually placed (the scene's count)
    notes: dict = field(default_factory=dict)


def _radius(scene: Scene, side: int, t: float, frames: int) -> float:
    r = SIZES[scene.size] * side
    u = t / max(1, frames - 1)
    if scene.motion == "growing":
        return r * (0.6 + 0.7 * u)
    if scene.motion == "shrinking":
        return r * (1.3 - 0.7 * u)
    return r


def _state(scene: Scene, start: np.ndarray, side: int, t: float, frames: int, w: int, h: int):
    """(centres [count, 2], radius, angle, opacity) at time t (may be negative: the afterimage of the past)."""
    v = SPEEDS[scene.speed]
    dx, dy = DIRECTIONS.get(scene.motion, (0, 0))
    centres = (start + np.array([dx, dy]) * v * t) % np.array([w, h])
    angle = (0.12 if scene.speed == "slowly" else 0.24) * t if scene.motion == "spinning" else 0.0
    u = min(1.0, max(0.0, t / max(1, frames - 1)))
    opacity = {"appearing": 0.15 + 0.85 * u, "disappearing": 1.0 - 0.85 * u}.get(scene.motion, 1.0)
    return centres, _radius(scene, side, t, frames), angle, opacity


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Pixels inside `shape` of radius r, in the object's own (rotated) coordinates u, v."""
    if shape == "square":
        return (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    if shape == "circle":
        return u ** 2 + v ** 2 <= r ** 2
    if shape == "ring":
        d = u ** 2 + v ** 2
        return (d <= r ** 2) & (d >= (0.55 * r) ** 2)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= r
    if shape == "cross":
        arm = 0.32 * r
        return ((np.abs(u) <= arm) & (np.abs(v) <= r)) | ((np.abs(v) <= arm) & (np.abs(u) <= r))
    # triangle pointing up (apex at v = -r, base at v = 0.7 r)
    return (v >= -r) & (v <= 0.7 * r) & (np.abs(u) <= (v + r) * 0.6)


def _object(shape: str, xx, yy, cx, cy, r, angle, w, h):
    """(inside mask, object coordinates u, v) of one object on the torus."""
    ox = (xx - cx + w / 2) % w - w / 2
    oy = (yy - cy + h / 2) % h - h / 2
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * ox + s * oy, -s * ox + c * oy
    return _shape_mask(shape, u, v, r), u, v


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def _past_objects(scene: Scene, start: np.ndarray, side: int, t: float, frames: int, xx, yy, w: int, h: int):
    """Inside masks of the scene's objects at (past) time t: what an afterimage draws."""
    cs, r, angle, _ = _state(scene, start, side, t, frames, w, h)
    return [_object(scene.shape, xx, yy, cx, cy, r, angle, w, h)[0] for cx, cy in cs]


def _place(scene: Scene, rng: np.random.Generator, side: int, w: int, h: int, frames: int) -> np.ndarray:
    """Start centres [count, 2] whose objects never overlap (same motion for all, so a safe start stays safe)."""
    rmax = max(_radius(scene, side, 0, frames), _radius(scene, side, frames - 1, frames))
    gap = 2 * rmax + 2
    for _ in range(200):
        pts = rng.uniform([0, 0], [w, h], size=(scene.count, 2))
        d = np.abs(pts[:, None] - pts[None])
        d = np.minimum(d, np.array([w, h]) - d)
        dist = np.sqrt((d ** 2).sum(-1)) + np.eye(scene.count) * 1e9
        if dist.min() >= gap:
            return pts
    raise ValueError(f"cannot place {scene.count} {scene.size} objects on a {w}x{h} canvas")


def fits(scene: Scene, width: int, height: int, frames: int) -> bool:
    """Whether `render` can place the scene's objects without overlap."""
    try:
        _place(scene, np.random.default_rng(scene.seed), min(width, height), width, height, frames)
        return True
    except ValueError:
        return False


def render(scene: Scene, width: int = 32, height: int = 32, frames: int = 16, times=None) -> Rendered:
    """Draw the scene: background texture, afterimage outlines, objects (pattern, opacity), deterministically.
    `times` draws only those frames of the `frames`-long clip (in that order); the result is the same pixels."""
    rng = np.random.default_rng(scene.seed)
    side = min(width, height)
    start = _place(scene, rng, side, width, height, frames)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    bg = np.array(BACKGROUNDS[scene.background], np.float64)
    texture = rng.integers(-8, 9, size=(height // 4 + 1, width // 4 + 1, 1)).repeat(4, 0).repeat(4, 1)
    background = np.clip(bg + texture[:height, :width], 0, 255)
    colour = np.array(COLOURS[scene.colour], np.float64)
    times = list(range(frames)) if times is None else list(times)
    out = np.empty((len(times), height, width, 3), np.uint8)
    masks = np.zeros((len(times), height, width), bool)
    centres = np.zeros((len(times), scene.count, 2))
    radii, opacity = np.zeros(len(times)), np.zeros(len(times))
    moving = scene.afterimage and scene.motion in VISIBLE_IN_A_FRAME
    for i, t in enumerate(times):
        img = background.copy()
        if moving:
            for ago, strength in TRAIL:          # filled copies of the past, under the object: a fading trail
                for past in _past_objects(scene, start, side, t - ago, frames, xx, yy, width, height):
                    img = np.where(past[..., None], strength * colour + (1 - strength) * img, img)
        cs, r, angle, alpha = _state(scene, start, side, t, frames, width, height)
        centres[i], radii[i], opacity[i] = cs, r, alpha
        full = np.zeros((height, width), bool)
        for cx, cy in cs:
            inside, u, v = _object(scene.shape, xx, yy, cx, cy, r, angle, width, height)
            shade = np.ones((height, width))
            if scene.pattern == "striped":
                shade = np.where(np.floor(u / STRIPE) % 2 == 0, 1.0, 0.4)
            elif scene.pattern == "dotted":
                shade = np.where((np.floor(u / STRIPE) % 2 == 0) & (np.floor(v / STRIPE) % 2 == 0), 0.4, 1.0)
            paint = colour[None, None] * shade[..., None]
            img = np.where(inside[..., None], alpha * paint + (1 - alpha) * img, img)
            full |= inside & (shade == 1.0)
        ghosted = np.zeros((height, width), bool)
        if moving:
            for ago, strength in GHOSTS:
                for past in _past_objects(scene, start, side, t - ago, frames, xx, yy, width, height):
                    line = _outline(past)
                    img = np.where(line[..., None], strength * colour + (1 - strength) * img, img)
                    ghosted |= line
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        masks[i] = full & ~ghosted & (alpha >= 0.999)
    return Rendered(out, masks, centres, radii, opacity, scene.count)


# ------------------------------------------------------------------------------------------------------- captions
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large")}
_PATTERN_WORDS = {"plain": ("", "plain", "solid"), "striped": ("striped",), "dotted": ("dotted", "spotted")}
_COUNT_WORDS = {1: ("a", "one"), 2: ("two",), 3: ("three",)}
_MOTION_WORDS = {
    "moving left": ("moving left", "going left", "heading left", "moving to the left"),
    "moving right": ("moving right", "going right", "heading right", "moving to the right"),
    "moving up": ("moving up", "going up", "heading up", "rising"),
    "moving down": ("moving down", "going down", "heading down", "falling"),
    "spinning": ("spinning", "rotating", "turning around"),
    "growing": ("growing", "getting bigger", "expanding"),
    "shrinking": ("shrinking", "getting smaller", "contracting"),
    "appearing": ("appearing", "fading in"),
    "disappearing": ("disappearing", "fading out"),
}
_SPEED_WORDS = {"slowly": ("slowly",), "quickly": ("quickly", "fast")}
_BG_WORDS = ("on a {} background", "against a {} background", "over {}", "with a {} background")
_PREFIXES = ("", "", "a photo of ", "a video of ", "an image of ", "a picture of ", "a example of ",
             "a demonstration of ")
_POSITION_WORDS = {"left": ("on the left", "at the left"), "right": ("on the right", "at the right"),
                   "top": ("at the top", "near the top"), "bottom": ("at the bottom", "near the bottom"),
                   "middle": ("in the middle", "in the centre")}


def position_of(centre: np.ndarray, width: int, height: int, margin: float = 0.0) -> str | None:
    """Where a centre lies: the middle third is 'middle', else the side it is nearest to; None when it lies within
    `margin` (a fraction of the canvas) of a border between two of those regions (no caption should claim it)."""
    x, y = centre[0] / width - 0.5, centre[1] / height - 0.5
    if abs(max(abs(x), abs(y)) - 1 / 6) < margin:
        return None
    if max(abs(x), abs(y)) < 1 / 6:
        return "middle"
    if abs(abs(x) - abs(y)) < margin:
        return None
    if abs(x) >= abs(y):
        return "left" if x < 0 else "right"
    return "top" if y < 0 else "bottom"


def frame_position(scene: Scene, r: Rendered, t: int) -> str | None:
    """The position word of frame t: for one object that is not split across the canvas edge, else None."""
    if scene.count != 1:
        return None
    h, w = r.frames.shape[1:3]
    (cx, cy), rad = r.centres[t, 0], r.radii[t]
    if not (rad <= cx <= w - rad and rad <= cy <= h - rad):
        return None
    return position_of(r.centres[t, 0], w, h, margin=0.06)


def noun_phrase(scene: Scene, rng: random.Random, *, full: bool = False) -> str:
    """'two small striped red triangles': colour and shape always, the rest sometimes (always with full)."""
    words = [rng.choice(_COUNT_WORDS[scene.count]) if full or scene.count > 1 or rng.random() < 0.8 else ""]
    words.append(rng.choice(_SIZE_WORDS[scene.size]) if full or rng.random() < 0.6 else "")
    pattern = rng.choice(_PATTERN_WORDS[scene.pattern]) if full or rng.random() < 0.6 else ""
    if rng.random() < 0.5:
        words += [scene.colour, pattern]
    else:
        words += [pattern, scene.colour]
    words.append(PLURAL[scene.shape] if scene.count > 1 else scene.shape)
    words = [w for w in words if w]
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def caption(scene: Scene, rng: random.Random, *, motion: bool = True, position: str | None = None) -> str:
    """One caption of a frame, from a small grammar with synonyms and several word orders."""
    np_ = noun_phrase(scene, rng)
    vp = ""
    if motion:
        vp = rng.choice(_MOTION_WORDS[scene.motion])
        if rng.random() < 0.4:
            adv = rng.choice(_SPEED_WORDS[scene.speed])
            vp = f"{adv} {vp}" if rng.random() < 0.5 and scene.motion not in ("growing", "shrinking") \
                else f"{vp} {adv}"
    bg = rng.choice(_BG_WORDS).format(scene.background) if rng.random() < 0.5 else ""
    pos = rng.choice(_POSITION_WORDS[position]) if position and rng.random() < 0.5 else ""
    form = rng.randrange(4)
    prefix = "" if form == 2 else rng.choice(_PREFIXES)
    if form == 0:
        parts = [np_, vp, pos, bg]
    elif form == 1:
        parts = [np_, bg, (", " + vp) if vp else "", pos]
    elif form == 2:
        be = "are" if scene.count > 1 else "is"
        parts = ["there", be, np_, pos, vp, bg]
    else:
        parts = [bg.replace("on a ", "a ").replace("against a ", "a ").replace("with a ", "a ").replace("over ", "")
                 + (" with" if bg else ""), np_, vp, pos]
    text = " ".join(p for p in parts if p).replace(" ,", ",").strip()
    return (prefix + text).strip()


def frame_caption(scene: Scene, r: Rendered, t: int, rng: random.Random) -> str:
    """A caption of frame t of a rendered scene: it names motion only when the frame shows it (an afterimage)."""
    return caption(scene, rng, motion=shows_motion(scene), position=frame_position(scene, r, t))


def shows_motion(scene: Scene) -> bool:
    """Whether a single frame of the scene shows its motion: only through the afterimage, and not for fading."""
    return scene.afterimage and scene.motion in VISIBLE_IN_A_FRAME


# ---------------------------------------------------------------------------------------- base-to-novel datasets
@dataclass(frozen=True)
class WorldClass:
    """An experiment class: a colour, a shape and a motion ('red square moving left'). With `says_colour` False the
    class's clips keep their colour but its name leaves it out ('square moving left')."""
    colour: str
    shape: str
    motion: str
    says_colour: bool = True

    @property
    def prompt(self) -> str:
        return f"{self.static_prompt} {self.motion}"

    @property
    def static_prompt(self) -> str:
        """What a single frame without afterimages can show of the class (as its name says it): 'red square'."""
        return f"{self.colour} {self.shape}" if self.says_colour else self.shape

    @property
    def name(self) -> str:
        """UCF-style CamelCase folder name: 'RedSquareMovingLeft'."""
        return "".join(w.capitalize() for w in self.prompt.split())


def class_grid(colours, shapes, motions) -> list[WorldClass]:
    return [WorldClass(c, s, m) for c, s, m in itertools.product(colours, shapes, motions)]


# The base-to-novel experiment (tools/bench_fidelity.py, tools/demo.py). Base: one static look (a red square), eight
# motions that only the afterimage (in a frame) or the clip tells apart; each is the time reversal of another
# (left/right, up/down, growing/shrinking, appearing/disappearing), so any frame of one is a frame of its partner.
# Their names say the shape and the motion, not the colour ('square moving left'), as an action's name leaves out
# what its actors look like: fine-tuning aligns red clips with colourless names and so learns to look past colour.
# Novel: eight colours no base class has, each with a shape, all spinning: the colour names them, which a CLIP
# pre-trained on captioned frames knows and base training teaches the model to disregard.
BASE_MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking", "appearing",
                "disappearing")
REVERSED = {"moving left": "moving right", "moving right": "moving left", "moving up": "moving down",
            "moving down": "moving up", "growing": "shrinking", "shrinking": "growing", "appearing": "disappearing",
            "disappearing": "appearing"}
BASE_CLASSES = tuple(WorldClass("red", "square", m, says_colour=False) for m in BASE_MOTIONS)
NOVEL_CLASSES = tuple(WorldClass(c, s, "spinning") for c, s in zip(
    ("green", "blue", "yellow", "purple", "orange", "white", "cyan", "pink"),
    ("circle", "triangle", "diamond", "cross", "ring", "diamond", "circle", "triangle")))


@dataclass
class WorldDataset:
    root: str
    base: list[WorldClass]
    novel: list[WorldClass]
    split_files: str                          # folder to pass as make_splits --from-split-files
    class_names: dict[str, str]               # folder name -> prompt (make_splits --class-names)
    videos: int
    val_split_files: str | None = None        # the same, evaluating base on held-out training groups (validation)


# what the experiment's clips fix besides the class: one big object moving quickly (pattern, background and place
# stay nuisance), so that a clip's motion is as plain as this small canvas allows
EXPERIMENT_NUISANCE = {"count": 1, "size": "big", "speed": "quickly"}


def class_scene(cls: WorldClass, rng: random.Random, width: int, height: int, frames: int,
                afterimage: bool = True, fixed: dict | None = None) -> Scene:
    """A random clip of a class: the class fixes colour, shape and motion, `fixed` other attributes; the rest is
    nuisance."""
    while True:
        s = replace(sample_scene(rng), colour=cls.colour, shape=cls.shape, motion=cls.motion, afterimage=afterimage,
                    **(fixed or {}))
        if fits(s, width, height, frames):
            return s


def make_b2n_ucf101(root: str, base: list[WorldClass], novel: list[WorldClass], *, groups: int = 8, clips: int = 2,
                    shots: int = 8, num_train_sets: int = 3, width: int = 32, height: int = 32, frames: int = 16,
                    fps: int = 30, seed: int = 0, val_groups: tuple[int, ...] = (), val_novel_clips: int = 1,
                    afterimage: bool = True, fixed: dict | None = None) -> WorldDataset:
    """UCF101 layout (`UCF-101/<Class>/v_<Class>_gXX_cYY.avi`, `ucfTrainTestlist/`) plus FROSTER's published
    base-to-novel lists (`zs_label_db/B2N_ucf101/`): base classes train on `shots` split-1 training videos each
    (a different draw per training set), base and novel evaluate on the split-1 test groups.

    `val_groups` (split-1 training groups) are held out of every training set and become the base validation
    clips of a second list folder, `zs_label_db_val/B2N_ucf101/` (same training sets; its novel list holds only
    `val_novel_clips` clips a class from those groups, because the format needs one: hyperparameters are chosen on
    its base accuracy alone). Novel classes, which never train, get videos in the test groups only (and those
    validation clips). `fixed`: scene attributes every clip shares (e.g. EXPERIMENT_NUISANCE)."""
    from shards.generated.synthetic import write_video  # the same encoder as the other generated datasets

    classes = list(base) + list(novel)
    if len({c.name for c in classes}) != len(classes):
        raise ValueError("base and novel classes must be distinct")
    if any((g - 1) % 4 == 0 or not 1 <= g <= groups for g in val_groups):
        raise ValueError(f"val_groups {val_groups}: must be split-1 training groups in 1..{groups}")
    rng = random.Random(seed)
    train: dict[str, list[str]] = {c.name: [] for c in classes}
    test: dict[str, list[str]] = {c.name: [] for c in classes}
    val: dict[str, list[str]] = {c.name: [] for c in classes}
    lists = {k: ([], []) for k in (1, 2, 3)}
    n = 0
    for ci, cls in enumerate(classes):
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                if cls in novel and (g - 1) % 4 and (g not in val_groups or c > val_novel_clips):
                    continue                                   # a novel class's training video: never used
                stem = f"v_{cls.name}_g{g:02d}_c{c:02d}"
                rel = f"{cls.name}/{stem}.avi"
                scene = class_scene(cls, rng, width, height, frames, afterimage, fixed)
                write_video(os.path.join(root, "UCF-101", rel), render(scene, width, height, frames).frames, fps)
                n += 1
                for k in (1, 2, 3):
                    if (g - 1) % 4 == k - 1:
                        lists[k][1].append(rel)
                    else:
                        lists[k][0].append(f"{rel} {ci + 1}")
                (test if (g - 1) % 4 == 0 else val if g in val_groups else train)[cls.name].append(rel)
    ucf = os.path.join(root, "ucfTrainTestlist")
    os.makedirs(ucf, exist_ok=True)
    _write(os.path.join(ucf, "classInd.txt"), [f"{i + 1} {c.name}" for i, c in enumerate(classes)], "\r\n")
    for k in (1, 2, 3):
        _write(os.path.join(ucf, f"trainlist0{k}.txt"), lists[k][0], "\r\n")
        _write(os.path.join(ucf, f"testlist0{k}.txt"), lists[k][1], "\r\n")
    train_rows = []
    for s in range(1, num_train_sets + 1):
        pick = random.Random(f"{seed}/train_s{s}")
        rows = []
        for i, c in enumerate(base):
            if len(train[c.name]) < shots:
                raise ValueError(f"{c.name}: {len(train[c.name])} training videos, fewer than shots={shots}")
            rows += [f"{v},{i}" for v in sorted(pick.sample(train[c.name], shots))]
        train_rows.append(rows)
    folders = {"zs_label_db": (test, {c.name: test[c.name] for c in novel})}
    if val_groups:
        folders["zs_label_db_val"] = (val, {c.name: val[c.name][:val_novel_clips] for c in novel})
    for folder, (base_eval, novel_eval) in folders.items():
        b2n = os.path.join(root, folder, "B2N_ucf101")
        os.makedirs(b2n, exist_ok=True)
        _write(os.path.join(b2n, "train_idx2cls.csv"), [f"{i},{c.name}" for i, c in enumerate(base)])
        _write(os.path.join(b2n, "test_idx2cls.csv"), [f"{i},{c.name}" for i, c in enumerate(novel)])
        for s, rows in enumerate(train_rows, 1):
            _write(os.path.join(b2n, f"train_s{s}.csv"), rows)
        _write(os.path.join(b2n, "val.csv"), [f"{v},{i}" for i, c in enumerate(base) for v in base_eval[c.name]])
        _write(os.path.join(b2n, "test.csv"), [f"{v},{i}" for i, c in enumerate(novel) for v in novel_eval[c.name]])
    return WorldDataset(root, list(base), list(novel), os.path.join(root, "zs_label_db"),
                        {c.name: c.prompt for c in classes}, n,
                        os.path.join(root, "zs_label_db_val") if val_groups else None)


def _write(path: str, lines: list[str], newline: str = "\n") -> None:
    with open(path, "w", newline="") as f:
        f.write(newline.join(lines) + newline)
