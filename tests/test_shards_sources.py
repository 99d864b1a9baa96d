"""Each dataset's official layout is read as distributed, and a wrong layout fails with a clear error."""
import json
import os

import pytest

from shards.records import KEY_RE, LayoutError, make_key
from shards.sources import load
from shards.generated.synthetic import make_hmdb51, make_kinetics, make_ssv2, make_ucf101


def _write(path, text, newline="\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text.replace("\n", newline))


def test_make_key_is_safe_and_unique():
    ids = ["v_YoYo_g01_c01", "#a&b_(1)", "#a&b_(2)", "a.b", "a_b", "x" * 200]
    keys = [make_key(i) for i in ids]
    assert keys[0] == "v_YoYo_g01_c01" and keys[4] == "a_b"
    assert all(KEY_RE.match(k) and len(k) <= 80 for k in keys)
    assert len(set(keys)) == len(keys)


def test_ucf101_layout(tmp_path):
    syn = make_ucf101(str(tmp_path), num_classes=3, groups=4)
    idx = load("ucf101", str(tmp_path))
    assert idx.classes == syn.classes and idx.splits == ["all"]
    by_id = {r.video_id: r for r in idx.records}
    assert set(by_id) == set(syn.labels)
    hs = by_id["v_HandStandPushups_g01_c01"]          # file spelled differently from classInd and folder
    assert hs.class_name == "HandstandPushups" and hs.label == syn.classes.index("HandstandPushups")
    assert hs.path.endswith("HandstandPushups/v_HandStandPushups_g01_c01.avi")
    g1 = by_id["v_YoYo_g01_c01"] if "v_YoYo_g01_c01" in by_id else by_id[f"v_{syn.classes[0]}_g01_c01"]
    assert g1.extras == {"split1": "test", "split2": "train", "split3": "train"}
    g4 = by_id[f"v_{syn.classes[2]}_g04_c01"]
    assert g4.extras == {"split1": "train", "split2": "train", "split3": "train"}
    missing = [r for r in idx.records if r.video_id in syn.rejects and syn.rejects[r.video_id] == "missing"]
    assert missing and all(r.path is None for r in missing)


def test_ucf101_errors(tmp_path):
    with pytest.raises(LayoutError, match="ucfTrainTestlist"):
        load("ucf101", str(tmp_path))
    make_ucf101(str(tmp_path), num_classes=2, groups=4, quirks=False)
    lists = tmp_path / "ucfTrainTestlist"
    good = (lists / "trainlist02.txt").read_bytes()
    _write(str(lists / "trainlist02.txt"), good.decode() + "Skiing/v_Skiing_g01_c01.avi 9\r\n", newline="")
    with pytest.raises(LayoutError, match=r"trainlist02\.txt:\d+: class 'Skiing' is not in classInd"):
        load("ucf101", str(tmp_path))
    _write(str(lists / "trainlist02.txt"), good.decode() + "garbage line here\r\n", newline="")
    with pytest.raises(LayoutError, match=r"trainlist02\.txt:\d+: expected"):
        load("ucf101", str(tmp_path))
    (lists / "trainlist02.txt").write_bytes(good)
    os.remove(lists / "testlist03.txt")
    with pytest.raises(LayoutError, match="testlist03.txt"):
        load("ucf101", str(tmp_path))


def test_hmdb51_layout_and_errors(tmp_path):
    syn = make_hmdb51(str(tmp_path), num_classes=3, per_class=4)
    idx = load("hmdb51", str(tmp_path))
    assert idx.classes == sorted(syn.classes)
    by_id = {r.video_id: r for r in idx.records}
    assert set(by_id) == set(syn.labels)
    quirky = [v for v in by_id if "#" in v and "&" in v and "(" in v]
    assert quirky and all(os.path.basename(by_id[v].source_path) == v + ".avi" for v in quirky)
    assert all(KEY_RE.match(r.key) for r in idx.records)
    last = by_id[f"{syn.classes[1]}_clip_3_goo_3"]
    assert last.extras["split3"] == "unused" and last.extras["split1"] == "train"
    bad = tmp_path / "testTrainMulti_7030_splits" / f"{syn.classes[0]}_test_split2.txt"
    bad.write_text(bad.read_text() + "oops.avi 7 \n")
    with pytest.raises(LayoutError, match=r"_test_split2\.txt:\d+: expected '<name>.avi <0\|1\|2>'"):
        load("hmdb51", str(tmp_path))
    os.remove(bad)
    with pytest.raises(LayoutError, match="_test_split2.txt"):
        load("hmdb51", str(tmp_path))


def test_kinetics_layout(tmp_path):
    syn = make_kinetics(str(tmp_path), num_classes=3, per_class=3)
    idx = load("k400", str(tmp_path))
    assert idx.classes == sorted(syn.classes) and idx.splits == ["train", "val", "test"]
    assert "passing American football (in game)" in idx.classes
    recs = {(r.split, r.video_id): r for r in idx.records}
    assert len(recs) == syn.total
    assert all(r.label == -1 and r.class_name == "" for r in idx.records if r.split == "test")
    replaced = [r for r in idx.records if r.source_path.startswith("replacement/")]
    assert len(replaced) == 1
    exts = {os.path.splitext(r.source_path)[1] for r in idx.records if r.split == "val"}
    assert {".mkv", ".webm"} <= exts
    r = idx.records[0]
    assert r.key == f"{r.video_id}_{r.extras['time_start']:06d}_{r.extras['time_end']:06d}"
    assert load("k400", str(tmp_path), ["val"]).splits == ["val"]


def test_kinetics_errors(tmp_path):
    with pytest.raises(LayoutError, match="annotations"):
        load("k600", str(tmp_path))
    _write(str(tmp_path / "annotations" / "train.csv"), "label,youtube_id,time_start,time_end,split\n"
           "yoga,abcdefghijk,3,13,train\nyoga,bcdefghijkl,x,13,train\n")
    with pytest.raises(LayoutError, match=r"train\.csv:3: column time_start must be a number"):
        load("k400", str(tmp_path))
    _write(str(tmp_path / "annotations" / "train.csv"), "label,youtube_id,split\nyoga,abc,train\n")
    with pytest.raises(LayoutError, match=r"train\.csv:1: header .* lacks column\(s\) time_start, time_end"):
        load("k400", str(tmp_path))
    _write(str(tmp_path / "annotations" / "train.csv"), "label,youtube_id,time_start,time_end,split\n"
           "yoga,abcdefghijk,3,13\n")
    with pytest.raises(LayoutError, match=r"train\.csv:2: expected 5 fields"):
        load("k400", str(tmp_path))


@pytest.mark.parametrize("download_names", [False, True])
def test_ssv2_layout(tmp_path, download_names):
    syn = make_ssv2(str(tmp_path), num_classes=3, train=4, val=2, test=2, download_names=download_names)
    idx = load("ssv2", str(tmp_path))
    assert idx.classes == syn.classes and idx.splits == ["train", "val", "test"]
    for r in idx.records:
        assert r.label == syn.labels[r.video_id]
        if r.split != "test":
            assert r.class_name == r.extras["template"].replace("[", "").replace("]", "")
            assert r.extras["placeholders"]


def test_ssv2_errors(tmp_path):
    with pytest.raises(LayoutError, match="20bn-something-something-v2"):
        load("ssv2", str(tmp_path))
    make_ssv2(str(tmp_path), num_classes=2, train=2, val=1, test=1, quirks=False)
    path = tmp_path / "labels" / "train.json"
    good = path.read_text()
    entries = json.loads(good)
    entries[1]["template"] = "Juggling [something]"
    path.write_text(json.dumps(entries))
    with pytest.raises(LayoutError, match=r"train\.json entry 1 \(id \d+\): class 'Juggling something' is not in"):
        load("ssv2", str(tmp_path))
    path.write_text(good)
    os.remove(tmp_path / "labels" / "validation.json")
    with pytest.raises(LayoutError, match="validation.json"):
        load("ssv2", str(tmp_path))


def test_duplicate_keys_become_rejects(tmp_path):
    make_kinetics(str(tmp_path), num_classes=2, per_class=1, test=0, quirks=False)
    csv = tmp_path / "annotations" / "val.csv"
    train_row = (tmp_path / "annotations" / "train.csv").read_text().splitlines()[1]
    csv.write_text(csv.read_text() + train_row.replace(",train", ",val") + "\n")
    idx = load("k400", str(tmp_path))
    dup = [r for r in idx.records if r.reject]
    assert len(dup) == 1 and dup[0].split == "val" and "duplicate" in dup[0].reject


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        load("kinetics", str(tmp_path))
    make_ucf101(str(tmp_path), num_classes=2, groups=4, quirks=False)
    with pytest.raises(ValueError, match="unknown"):
        load("ucf101", str(tmp_path), ["train"])
