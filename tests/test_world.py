"""The generated world: captions name what is drawn (checked against the rendered pixels), rendering is
deterministic, and the base-to-novel dataset has UCF101's layout and FROSTER's split lists."""
import itertools
import random
import re

import numpy as np
import pytest
from scipy import ndimage

from shards.generated import world as w
from shards.generated.world import Scene

W = H = 32
T = 16


def still(**kw) -> Scene:
    """A scene whose frame 0 shows fully opaque objects and no afterimage ('disappearing' starts opaque)."""
    return Scene(**{"colour": "red", "shape": "square", "motion": "disappearing", "pattern": "plain", **kw})


def centroid(mask: np.ndarray) -> np.ndarray:
    """(x, y) centre of the mask's pixels on the torus (circular means: an object may straddle the border)."""
    yy, xx = np.nonzero(mask)
    out = []
    for v, n in ((xx + 0.5, mask.shape[1]), (yy + 0.5, mask.shape[0])):
        a = 2 * np.pi * v / n
        out.append((np.arctan2(np.sin(a).mean(), np.cos(a).mean()) * n / (2 * np.pi)) % n)
    return np.array(out)


@pytest.mark.parametrize("colour", list(w.COLOURS))
def test_object_pixels_have_the_colour_the_caption_names(colour):
    for shape, pattern in itertools.product(w.SHAPES, w.PATTERNS):
        s = still(colour=colour, shape=shape, pattern=pattern, seed=hash((shape, pattern)) % 1000)
        r = w.render(s, W, H, T)
        px = r.frames[0][r.masks[0]].astype(int)
        assert len(px) > 10, (s, len(px))
        assert np.abs(px - np.array(w.COLOURS[colour])).max() <= 1, s
        # and the caption names that colour and that shape, and no other colour or shape
        cap = w.caption(s, random.Random(1), motion=True)
        words = set(re.findall(r"[a-z]+", cap))
        assert colour in words and (shape in words or w.PLURAL[shape] in words), cap
        assert not (words & (set(w.COLOURS) - {colour})), cap
        assert not (words & ((set(w.SHAPES) | set(w.PLURAL.values())) - {shape, w.PLURAL[shape]})), cap


@pytest.mark.parametrize("background", list(w.BACKGROUNDS))
def test_background_pixels_have_the_named_background(background):
    s = still(background=background, size="small", seed=3)
    r = w.render(s, W, H, T)
    far = ~ndimage.binary_dilation(r.masks[0], iterations=3)
    px = r.frames[0][far].astype(int)
    assert np.abs(px.mean(0) - np.array(w.BACKGROUNDS[background])).max() <= 3
    assert np.abs(px - np.array(w.BACKGROUNDS[background])).max() <= 8   # the texture's amplitude


@pytest.mark.parametrize("count", w.COUNTS)
def test_count_is_the_number_of_separate_objects(count):
    for seed in range(5):
        s = still(count=count, size="small", shape="circle", seed=seed)
        r = w.render(s, W, H, T)
        # objects may wrap around the border: label on the torus by tiling the mask
        tiled = np.tile(r.masks[0], (2, 2))
        labels, n = ndimage.label(tiled)
        core = labels[H // 2:H // 2 + H, W // 2:W // 2 + W]
        ids = set(np.unique(core)) - {0}
        assert len({frozenset(np.argwhere(labels == i)[:, 0] % H * W + np.argwhere(labels == i)[:, 1] % W)
                    for i in ids}) == count
        words = w.noun_phrase(s, random.Random(seed), full=True).split()
        assert words[0] == {1: "a", 2: "two", 3: "three"}[count] or (count == 1 and words[0] in ("one",))


def test_big_objects_cover_more_pixels_than_small_ones():
    for shape in w.SHAPES:
        big = w.render(still(shape=shape, size="big", seed=1), W, H, T).masks[0].sum()
        small = w.render(still(shape=shape, size="small", seed=1), W, H, T).masks[0].sum()
        assert big > 1.8 * small, (shape, big, small)


def test_pattern_shows_dark_stripes_or_dots_only_when_named():
    for pattern in w.PATTERNS:
        s = still(pattern=pattern, colour="white", background="black", seed=5)
        r = w.render(s, W, H, T)
        img = r.frames[0].astype(int)
        dark = (np.abs(img - 0.4 * np.array(w.COLOURS["white"])).max(-1) <= 2).sum()
        assert (dark > 5) == (pattern != "plain"), (pattern, dark)


def test_position_word_matches_where_the_object_is():
    seen = set()
    for seed in range(200):
        s = still(size="small", shape="circle", seed=seed)
        r = w.render(s, W, H, T, times=[0])
        word = w.frame_position(s, r, 0)
        if word is None:   # split across the border: no position is claimed
            continue
        assert w.position_of(centroid(r.masks[0]), W, H) == word
        seen.add(word)
    assert seen == set(w.POSITIONS)


@pytest.mark.parametrize("motion", list(w.DIRECTIONS))
def test_direction_of_motion_matches_the_pixels(motion):
    s = Scene("green", "circle", motion, size="small", speed="quickly", seed=7)
    r = w.render(s, W, H, T)
    # follow the object from frame to frame (steps are small, so unwrap each step)
    pos = [centroid(r.masks[t]) for t in range(T) if r.masks[t].any()]
    steps = np.diff(pos, axis=0)
    steps = (steps + W / 2) % W - W / 2
    total = steps.sum(0)
    dx, dy = w.DIRECTIONS[motion]
    assert np.sign(np.round(total)).tolist() == [dx, dy], (motion, total)


def test_growing_shrinking_appearing_disappearing_match_the_pixels():
    area = {m: [w.render(Scene("blue", "circle", m, seed=2), W, H, T, times=[t]).masks[0].sum() for t in (0, T - 1)]
            for m in ("growing", "shrinking")}
    assert area["growing"][1] > 1.5 * area["growing"][0]
    assert area["shrinking"][0] > 1.5 * area["shrinking"][1]
    for m, rising in (("appearing", True), ("disappearing", False)):
        s = Scene("yellow", "square", m, background="black", seed=4)
        r = w.render(s, W, H, T)
        bright = [r.frames[t].astype(int).sum(-1).mean() for t in (0, T - 1)]
        assert (bright[1] > bright[0] * 1.3) if rising else (bright[0] > bright[1] * 1.3), (m, bright)


def test_spinning_turns_the_shape_in_place():
    s = Scene("white", "cross", "spinning", size="big", speed="quickly", seed=9)
    r = w.render(s, W, H, T)
    a, b = r.frames[0].astype(int), r.frames[6].astype(int)
    assert np.allclose(r.centres[0], r.centres[6])
    assert np.abs(a - b).sum(-1).astype(bool).sum() > 20     # the arms moved


def test_afterimage_trails_behind_a_moving_object():
    s = Scene("white", "square", "moving right", size="small", speed="quickly", background="black", seed=11)
    r = w.render(s, W, H, T, times=[10])
    x = r.centres[0, 0, 0]
    img = r.frames[0].astype(int).sum(-1)
    cols = np.nonzero((img > 150).any(0) & ~r.masks[0].any(0))[0] + 0.5
    rel = (cols - x + W / 2) % W - W / 2
    assert len(rel) and (rel < 0).sum() > (rel > 0).sum()     # the trail lies to the left (behind)


def test_the_filled_trail_fades_behind_a_moving_object(monkeypatch):
    """The trail alone (no outlines): copies of the object where it was, dimmer the longer ago, none ahead."""
    monkeypatch.setattr(w, "GHOSTS", ())
    s = Scene("white", "square", "moving right", size="small", speed="quickly", background="black", seed=11)
    r = w.render(s, W, H, T, times=[10])
    x, y = r.centres[0, 0]
    half = int(0.8 * w.SIZES["small"] * min(W, H))          # the square's half side
    row = r.frames[0, int(y)].astype(int).sum(-1)             # brightness along the row through the centre
    def at(offset):                                           # columns `offset` pixels from the centre (on the torus)
        return row[int(np.floor(x + offset)) % W]
    step = w.SPEEDS["quickly"]
    near, far = at(-half - 0.5 * w.TRAIL[0][0] * step), at(-half - 0.5 * (w.TRAIL[1][0] + w.TRAIL[2][0]) * step)
    ahead = at(half + 2)
    assert near > far > ahead + 20, (near, far, ahead)


def test_motion_words_come_from_the_scene_and_are_left_out_when_a_frame_cannot_show_them():
    rng = random.Random(0)
    for _ in range(200):
        s = w.sample_scene(rng)
        if not w.fits(s, W, H, T):
            continue
        r = w.render(s, W, H, T, times=[8])
        cap = w.frame_caption(s, r, 0, rng)
        named = {m for m, syns in w._MOTION_WORDS.items() if any(re.search(rf"\b{x}\b", cap) for x in syns)}
        if s.motion in w.VISIBLE_IN_A_FRAME:
            assert named <= {s.motion}, (s, cap)
        else:
            assert not named, (s, cap)


def test_rendering_is_deterministic_and_times_draw_the_same_pixels():
    s = Scene("purple", "triangle", "moving up", pattern="striped", count=2, size="small", seed=21)
    a, b = w.render(s, W, H, T), w.render(s, W, H, T)
    assert np.array_equal(a.frames, b.frames)
    part = w.render(s, W, H, T, times=[3, 12])
    assert np.array_equal(part.frames, a.frames[[3, 12]]) and np.array_equal(part.masks, a.masks[[3, 12]])
    rng1, rng2 = random.Random(5), random.Random(5)
    assert [w.caption(s, rng1) for _ in range(5)] == [w.caption(s, rng2) for _ in range(5)]


def test_captions_vary():
    s = Scene("red", "triangle", "spinning", seed=1)
    rng = random.Random(0)
    caps = {w.caption(s, rng) for _ in range(100)}
    assert len(caps) > 40
    assert any(c.startswith("there is") for c in caps) and any("rotating" in c for c in caps)


def test_b2n_dataset_layout_and_split_lists(tmp_path):
    base = w.class_grid(("red",), ("square",), ("moving left", "spinning"))
    novel = w.class_grid(("yellow",), ("circle",), ("moving up", "growing"))
    ds = w.make_b2n_ucf101(str(tmp_path), base, novel, groups=4, clips=1, shots=2, num_train_sets=2, frames=8)
    # base classes: every group; novel classes (which never train): the test group only
    assert ds.videos == 2 * 4 + 2 * 1 and ds.class_names["RedSquareMovingLeft"] == "red square moving left"
    assert (tmp_path / "UCF-101" / "YellowCircleGrowing" / "v_YellowCircleGrowing_g01_c01.avi").stat().st_size > 0
    assert not (tmp_path / "UCF-101" / "YellowCircleGrowing" / "v_YellowCircleGrowing_g03_c01.avi").exists()
    ind = (tmp_path / "ucfTrainTestlist" / "classInd.txt").read_bytes()
    assert ind.startswith(b"1 RedSquareMovingLeft\r\n")
    b2n = tmp_path / "zs_label_db" / "B2N_ucf101"
    assert (b2n / "train_idx2cls.csv").read_text().splitlines() == ["0,RedSquareMovingLeft", "1,RedSquareSpinning"]
    for s in (1, 2):
        rows = (b2n / f"train_s{s}.csv").read_text().splitlines()
        assert len(rows) == 4 and all("_g01_" not in r for r in rows)       # group 1 is split 1's test group
    assert all("_g01_" in r for r in (b2n / "test.csv").read_text().splitlines())


def test_any_frame_of_a_base_class_is_a_frame_of_its_time_reversed_partner_without_afterimages():
    """The experiment's base classes share one static look: without afterimages, a single frame of a red square
    moving left at time t is, pixel for pixel, the frame of one moving right at time -t (same start);
    growing/shrinking and appearing/disappearing are each other's clips played backwards. Only the clip's order
    tells them apart; with afterimages a single frame does."""
    from dataclasses import replace
    assert {(c.colour, c.shape) for c in w.BASE_CLASSES} == {("red", "square")} and len(w.BASE_CLASSES) == 8
    for cls in w.BASE_CLASSES:
        partner = w.REVERSED[cls.motion]
        assert replace(cls, motion=partner) in w.BASE_CLASSES
        s = w.class_scene(cls, random.Random(len(cls.name)), W, H, T, afterimage=False)
        p = replace(s, motion=partner)
        if cls.motion in w.DIRECTIONS:
            for t in (3, 9, 15):
                assert np.array_equal(w.render(s, W, H, T, times=[t]).frames, w.render(p, W, H, T, times=[-t]).frames)
            ghosted = [w.render(replace(x, afterimage=True), W, H, T, times=[t]).frames for x, t in ((s, 9), (p, -9))]
            assert not np.array_equal(*ghosted)
        else:
            a, b = w.render(s, W, H, T).frames, w.render(p, W, H, T).frames[::-1]
            assert np.mean(np.abs(a.astype(int) - b.astype(int)) > 1) < 0.002, cls
            assert not np.array_equal(a, w.render(p, W, H, T).frames)        # forwards they differ


def test_base_names_leave_the_colour_out_that_their_clips_show():
    """'square moving left': the name says shape and motion; every clip of the class shows a red square."""
    assert [c.prompt for c in w.BASE_CLASSES[:2]] == ["square moving left", "square moving right"]
    assert {c.static_prompt for c in w.BASE_CLASSES} == {"square"}
    assert w.BASE_CLASSES[0].name == "SquareMovingLeft"
    assert w.WorldClass("red", "square", "growing").prompt == "red square growing"       # the default says it
    rng = random.Random(0)
    scenes = [w.class_scene(c, rng, W, H, T, fixed=w.EXPERIMENT_NUISANCE) for c in w.BASE_CLASSES for _ in range(3)]
    assert {s.colour for s in scenes} == {"red"} and {s.shape for s in scenes} == {"square"}
    r = w.render(scenes[0], W, H, T)
    red = np.array(w.COLOURS["red"])
    assert (np.abs(r.frames[r.masks].astype(int) - red).max(axis=-1) <= 1).all() and r.masks.any()


def test_novel_classes_need_colours_no_base_class_has_and_their_static_look_names_them():
    base_colours = {c.colour for c in w.BASE_CLASSES}
    novel = w.NOVEL_CLASSES
    assert len(novel) == 8 and len({c.colour for c in novel}) == 8 and not ({c.colour for c in novel} & base_colours)
    assert len({c.static_prompt for c in novel}) == 8
    # pre-training sees every novel (colour, shape) pair; none is one of its held-out pairs
    from tools.pretrain_clip import HELD_OUT
    assert not {(c.colour, c.shape) for c in (*novel, *w.BASE_CLASSES)} & set(HELD_OUT)


def test_without_afterimages_no_frame_caption_names_a_motion():
    rng = random.Random(3)
    for _ in range(100):
        s = Scene("red", "square", rng.choice(w.MOTIONS), seed=rng.randrange(1000), afterimage=False)
        if not w.fits(s, W, H, T):
            continue
        r = w.render(s, W, H, T, times=[10])
        cap = w.frame_caption(s, r, 0, rng)
        assert not any(re.search(rf"\b{x}\b", cap) for syns in w._MOTION_WORDS.values() for x in syns), cap


def test_b2n_dataset_holds_out_validation_groups_from_every_training_set(tmp_path):
    ds = w.make_b2n_ucf101(str(tmp_path), list(w.BASE_CLASSES[:2]), list(w.NOVEL_CLASSES[:2]), groups=4, clips=2,
                           shots=3, num_train_sets=2, frames=8, val_groups=(2,), afterimage=False)
    test_db, val_db = tmp_path / "zs_label_db" / "B2N_ucf101", tmp_path / "zs_label_db_val" / "B2N_ucf101"
    assert ds.val_split_files == str(tmp_path / "zs_label_db_val")
    for s in (1, 2):
        rows = (test_db / f"train_s{s}.csv").read_text()
        assert rows == (val_db / f"train_s{s}.csv").read_text()
        assert "_g01_" not in rows and "_g02_" not in rows and rows.count("\n") == 6
    val = (val_db / "val.csv").read_text().splitlines()
    assert len(val) == 4 and all("_g02_" in r for r in val)                     # base validation: group 2
    assert all("_g01_" in r for r in (test_db / "val.csv").read_text().splitlines())
    assert len((val_db / "test.csv").read_text().splitlines()) == 2             # one placeholder clip a novel class
    with pytest.raises(ValueError, match="val_groups"):
        w.make_b2n_ucf101(str(tmp_path / "x"), list(w.BASE_CLASSES[:2]), [], groups=4, val_groups=(1,))
