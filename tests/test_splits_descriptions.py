"""Class names and descriptions: readable default names against the published label lists, FROSTER's rephrased
class files read as published (matched by Name, not index), and their automatic pick with --split-format froster.

The description texts here are written by the tests, in FROSTER's format ({index: "Name: description"}).
"""
from __future__ import annotations

import importlib.util
import json
import random
import re
import warnings

import pyarrow.parquet as pq
import pytest

from shards import splits
from shards.protocols.names import k400_names, loose, normalise, parse_label_list, readable_name
from test_splits import LABELS, REPO, kinetics_rows, make_store, ucf_rows
from test_splits_published import froster_tree, write

def _load_make_splits():
    spec = importlib.util.spec_from_file_location("frostline_make_splits", REPO / "tools" / "make_splits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


make_splits = _load_make_splits()

# UCF101's classInd.txt names (its folder names), in classInd order
UCF101_CLASSIND = ['ApplyEyeMakeup', 'ApplyLipstick', 'Archery', 'BabyCrawling', 'BalanceBeam', 'BandMarching',
    'BaseballPitch', 'Basketball', 'BasketballDunk', 'BenchPress', 'Biking', 'Billiards', 'BlowDryHair',
    'BlowingCandles', 'BodyWeightSquats', 'Bowling', 'BoxingPunchingBag', 'BoxingSpeedBag', 'BreastStroke',
    'BrushingTeeth', 'CleanAndJerk', 'CliffDiving', 'CricketBowling', 'CricketShot', 'CuttingInKitchen', 'Diving',
    'Drumming', 'Fencing', 'FieldHockeyPenalty', 'FloorGymnastics', 'FrisbeeCatch', 'FrontCrawl', 'GolfSwing',
    'Haircut', 'Hammering', 'HammerThrow', 'HandstandPushups', 'HandstandWalking', 'HeadMassage', 'HighJump',
    'HorseRace', 'HorseRiding', 'HulaHoop', 'IceDancing', 'JavelinThrow', 'JugglingBalls', 'JumpingJack', 'JumpRope',
    'Kayaking', 'Knitting', 'LongJump', 'Lunges', 'MilitaryParade', 'Mixing', 'MoppingFloor', 'Nunchucks',
    'ParallelBars', 'PizzaTossing', 'PlayingCello', 'PlayingDaf', 'PlayingDhol', 'PlayingFlute', 'PlayingGuitar',
    'PlayingPiano', 'PlayingSitar', 'PlayingTabla', 'PlayingViolin', 'PoleVault', 'PommelHorse', 'PullUps', 'Punch',
    'PushUps', 'Rafting', 'RockClimbingIndoor', 'RopeClimbing', 'Rowing', 'SalsaSpin', 'ShavingBeard', 'Shotput',
    'SkateBoarding', 'Skiing', 'Skijet', 'SkyDiving', 'SoccerJuggling', 'SoccerPenalty', 'StillRings',
    'SumoWrestling', 'Surfing', 'Swing', 'TableTennisShot', 'TaiChi', 'TennisSwing', 'ThrowDiscus',
    'TrampolineJumping', 'Typing', 'UnevenBars', 'VolleyballSpiking', 'WalkingWithDog', 'WallPushups',
    'WritingOnBoard', 'YoYo']

# The Names of FROSTER's rephrased UCF101 file (label_rephrase/ucf101_rephrased_classes.json), in classInd order:
# what a user's --class-names file holds before "Name: description"
OFFICIAL_UCF101_NAMES = [
    'Apply Eye Makeup', 'Apply Lipstick', 'Archery', 'Baby Crawling', 'Balance Beam', 'Band Marching',
    'Baseball Pitch', 'Basketball', 'Basketball Dunk', 'Bench Press', 'Biking', 'Billiards', 'Blow Dry Hair',
    'Blowing Candles', 'Body Weight Squats', 'Bowling', 'Boxing Punching Bag', 'Boxing Speed Bag', 'Breast Stroke',
    'Brushing Teeth', 'Clean And Jerk', 'Cliff Diving', 'Cricket Bowling', 'Cricket Shot', 'Cutting In Kitchen',
    'Diving', 'Drumming', 'Fencing', 'Field Hockey Penalty', 'Floor Gymnastics', 'Frisbee Catch', 'Front Crawl',
    'Golf Swing', 'Haircut', 'Hammering', 'Hammer Throw', 'Handstand Pushups', 'Handstand Walking', 'Head Massage',
    'High Jump', 'Horse Race', 'Horse Riding', 'Hula Hoop', 'Ice Dancing', 'Javelin Throw', 'Juggling Balls',
    'Jumping Jack', 'Jump Rope', 'Kayaking', 'Knitting', 'Long Jump', 'Lunges', 'Military Parade', 'Mixing',
    'Mopping Floor', 'Nunchucks', 'Parallel Bars', 'Pizza Tossing', 'Playing Cello', 'Playing Daf', 'Playing Dhol',
    'Playing Flute', 'Playing Guitar', 'Playing Piano', 'Playing Sitar', 'Playing Tabla', 'Playing Violin',
    'Pole Vault', 'Pommel Horse', 'Pull Ups', 'Punch', 'Push Ups', 'Rafting', 'Rock Climbing Indoor',
    'Rope Climbing', 'Rowing', 'Salsa Spin', 'Shaving Beard', 'Shotput', 'Skate Boarding', 'Skiing', 'Skijet',
    'Sky Diving', 'Soccer Juggling', 'Soccer Penalty', 'Still Rings', 'Sumo Wrestling', 'Surfing', 'Swing',
    'Table Tennis Shot', 'Tai Chi', 'Tennis Swing', 'Throw Discus', 'Trampoline Jumping', 'Typing', 'Uneven Bars',
    'Volleyball Spiking', 'Walking With Dog', 'Wall Pushups', 'Writing On Board', 'Yoyo']
OFFICIAL_UCF101 = dict(zip(UCF101_CLASSIND, OFFICIAL_UCF101_NAMES))      # classInd name -> FROSTER's Name


def test_readable_names_rules():
    assert readable_name("ApplyEyeMakeup") == "Apply Eye Makeup"
    assert readable_name("YoYo") == "Yoyo"                                  # the published lists' spelling
    assert readable_name("brush_hair") == "brush hair"
    assert readable_name("Putting [something] on a surface") == "Putting something on a surface"
    assert readable_name("passing American football (in game)") == "passing American football (in game)"
    assert readable_name("Skijet") == "Skijet" and readable_name("Typing") == "Typing"
    assert loose("Driving a car") == loose("driving car") and loose("Barbecuing") == loose("barbequing")


def _real(name: str) -> list[str]:
    path = LABELS / name
    if not path.is_file():
        pytest.skip("the real class lists (../shared/data/labels or $FROSTLINE_SHARED) are not here")
    return [n for _, n in parse_label_list(path.read_text(), str(path))]


def test_readable_names_equal_the_published_label_files_for_every_class():
    ucf = _real("ucf_101_labels.csv")
    assert [normalise(n) for n in UCF101_CLASSIND] == [normalise(n) for n in ucf]   # the same classes, in order
    assert [readable_name(n) for n in UCF101_CLASSIND] == ucf                          # all 101, spelled alike
    hmdb = _real("hmdb_51_labels.csv")
    assert [readable_name(n.replace(" ", "_")) for n in hmdb] == hmdb                # folder names: brush_hair
    ssv2 = _real("ssv2_174_labels.csv")
    bracketed = [re.sub(r"\bsomething\b", "[something]", n) for n in ssv2]            # the templates' spelling
    assert sum("[" in b for b in bracketed) > 150
    assert [readable_name(b) for b in bracketed] == ssv2 and [readable_name(n) for n in ssv2] == ssv2
    for name in ("kinetics_400_labels.csv", "kinetics_600_labels.csv"):
        names = _real(name)
        assert [readable_name(n) for n in names] == names
    assert list(k400_names()) == _real("kinetics_400_labels.csv")     # the stored official name-only spelling


def froster_file(names: list[str], seed: int = 0) -> dict[str, str]:
    """A rephrased class file in FROSTER's format: keys are indices in the file's own (shuffled) order."""
    order = list(names)
    random.Random(seed).shuffle(order)
    return {str(i): f"{n}: test description {i} of someone doing {n.lower()} in a short clip"
            for i, n in enumerate(order)}


def test_make_splits_gives_every_ucf101_class_its_froster_description(tmp_path, capsys):
    store = make_store(tmp_path / "ucf", "ucf101", UCF101_CLASSIND, ucf_rows(classes=UCF101_CLASSIND))
    entries = froster_file(OFFICIAL_UCF101_NAMES)
    path = tmp_path / "ucf101_rephrased_classes.json"
    path.write_text(json.dumps(entries))
    rc = make_splits.main(["--protocol", "base2novel", "--dataset", "ucf101", "--manifest", store, "--out",
                           str(tmp_path / "out"), "--shots", "2", "--class-names", str(path)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    folder = tmp_path / "out" / "base2novel" / "ucf101"
    classes = (pq.read_table(folder / "classes_base.parquet").to_pylist()
               + pq.read_table(folder / "classes_novel.parquet").to_pylist())
    by_name = {v.split(":")[0]: v for v in entries.values()}
    assert len(classes) == 101
    assert all(c["prompt"] == by_name[OFFICIAL_UCF101[c["class_name"]]] for c in classes)
    assert "101 of 101 classes got a description" in out.out and "WARNING" not in out.err


def test_unknown_name_is_an_error_and_a_missing_class_a_warning(tmp_path, capsys):
    classes = UCF101_CLASSIND[:6]
    store = make_store(tmp_path / "ucf", "ucf101", classes, ucf_rows(classes=classes))
    path = tmp_path / "c.json"
    path.write_text(json.dumps(froster_file([OFFICIAL_UCF101[n] for n in classes[:5]] + ["Juggling Chainsaws"])))
    args = ["--protocol", "base2novel", "--dataset", "ucf101", "--manifest", store, "--out", str(tmp_path / "o"),
            "--shots", "2", "--class-names", str(path)]
    assert make_splits.main(args) == 2
    assert "entry names no class of the dataset: 'Juggling Chainsaws'" in capsys.readouterr().err
    path.write_text(json.dumps(froster_file([OFFICIAL_UCF101[n] for n in classes[:5]])))
    assert make_splits.main(args) == 0
    out = capsys.readouterr()
    assert "5 of 6 classes got a description" in out.out
    assert "WARNING" in out.err and "no description for 1 class(es)" in out.err and "'BandMarching'" in out.err


def test_published_spelling_variants_match_loosely(tmp_path):
    names = ["barbequing", "driving car", "abseiling"]
    k400 = splits.Manifest.load(make_store(tmp_path / "k400", "k400", names, kinetics_rows(names)))
    text = json.dumps({"0": "Abseiling: x.", "1": "Barbecuing: y.", "2": "Driving a car: z."})
    plan = splits.cross_train(k400, class_names=text, class_names_path="k400.json")
    assert {c.class_name: c.prompt for c in plan.files[0].classes} == {
        "barbequing": "Barbecuing: y.", "driving car": "Driving a car: z.", "abseiling": "Abseiling: x."}
    assert any("'Driving a car' matched class 'driving car'" in n for n in plan.notes)


def test_froster_split_format_picks_the_rephrased_files(tmp_path):
    from test_splits import UCF_CLASSES
    ucf = splits.Manifest.load(make_store(tmp_path / "ucf", "ucf101", UCF_CLASSES, ucf_rows()))
    root = tmp_path / "FROSTER"
    base = froster_tree(root, ucf_rows())
    novel = ["Yo Yo", "Archery", "Baby Crawling"]
    train_file, test_file = froster_file(base, 1), froster_file(novel, 2)
    write(root / "zs_label_db/B2N_ucf101/train_rephrased.json", [json.dumps(train_file)])
    write(root / "zs_label_db/B2N_ucf101/test_rephrased.json", [json.dumps(test_file)])
    write(root / "zs_label_db/B2N_k400_s1/train_rephrased.json", ["{}"])      # other datasets' files are ignored
    full = froster_file([OFFICIAL_UCF101[n] for n in UCF_CLASSES], 3)
    write(root / "label_rephrase/ucf101_rephrased_classes.json", [json.dumps(full)])
    plan = splits.base2novel(ucf, split_files=str(root), shots=3, split_format="froster")
    got = {f.classes_name: {c.class_name: c.prompt for c in f.classes} for f in plan.files}
    assert got["classes_base"] == {n: next(v for v in train_file.values() if v.startswith(n + ":")) for n in base}
    assert got["classes_novel"] == {n: next(v for v in test_file.values() if v.startswith(n + ":")) for n in novel}
    assert sum("got a description from" in n for n in plan.notes) == 2
    k400 = splits.Manifest.load(make_store(tmp_path / "k400", "k400", ["typing"], kinetics_rows(["typing"])))
    cross = splits.cross(k400, ucf, split_files=str(root), split_format="froster")
    for f in cross.files:
        assert {c.prompt for c in f.classes} == set(full.values())
    # an explicit --class-names wins over the files under DIR; none there: readable names and a note
    mine = json.dumps({"Typing": "Typing: mine."})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", splits.SplitWarning)
        plan = splits.base2novel(ucf, split_files=str(root), shots=3, split_format="froster", class_names=mine,
                                 class_names_path="mine.json")
    assert {c.class_name: c.prompt for c in plan.files[0].classes}["Typing"] == "Typing: mine."
    (root / "label_rephrase/ucf101_rephrased_classes.json").unlink()
    cross = splits.cross(k400, ucf, split_files=str(root), split_format="froster")
    assert {c.prompt for c in cross.files[0].classes} == {readable_name(n) for n in UCF_CLASSES}
    assert any("no label_rephrase/ucf101_rephrased_classes.json" in n for n in cross.notes)


def test_froster_split_format_picks_k400_and_k600_files(tmp_path):
    k400_names, k600_names = ["abseiling", "driving car"], ["abseiling", "acting in play", "driving car", "zumba"]
    k400 = splits.Manifest.load(make_store(tmp_path / "k400", "k400", k400_names, kinetics_rows(k400_names)))
    k600 = splits.Manifest.load(make_store(tmp_path / "k600", "k600", k600_names,
                                           kinetics_rows(k600_names, prefix="z")))
    root = tmp_path / "FROSTER"
    train_file = froster_file(["Abseiling", "Driving a car"], 4)             # FROSTER's own spelling
    write(root / "label_rephrase/k400_rephrased_classes.json", [json.dumps(train_file)])
    plan = splits.cross_train(k400, split_files=str(root), split_format="froster")
    assert sorted(c.prompt for c in plan.files[0].classes) == sorted(train_file.values())
    assert any("2 of 2 classes got a description" in n for n in plan.notes)
    # K600: set n takes k600_split<n>_rephrased_classes.json
    for n in (1, 2):
        write(root / f"zs_label_db/k600_split{n}/val.csv",
              [f"{r['key']}.mp4,{i}" for i, c in enumerate(["acting in play", "zumba"])
               for r in kinetics_rows(k600_names, prefix="z") if r["split"] == "val"
               and k600_names[r["label"]] == c])
        write(root / f"labels/ZS_split{n}_K600.csv", ["id,name", "0,acting in play", "1,zumba"])
        write(root / f"label_rephrase/k600_split{n}_rephrased_classes.json",
              [json.dumps(froster_file(["Acting in play", "Zumba"], 10 + n))])
    cross = splits.cross(k400, k600, split_files=str(root), split_format="froster", num_eval_sets=2)
    for n, f in enumerate(cross.files, 1):
        expect = json.loads((root / f"label_rephrase/k600_split{n}_rephrased_classes.json").read_text())
        assert sorted(c.prompt for c in f.classes) == sorted(expect.values())
