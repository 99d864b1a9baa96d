"""--dataset folder: the two layouts, the seeded per-class test share, and layouts that are refused with the path."""
from __future__ import annotations

import pytest

from shards.records import LayoutError
from shards.sources import load


def _touch(root, *names):
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")


def test_class_folders_become_classes_and_a_seeded_share_of_each_is_test(tmp_path):
    _touch(tmp_path, *[f"RidingBikes/c{i}.mp4" for i in range(10)], *[f"juggling_balls/sub/{i}.avi" for i in range(4)],
           "juggling_balls/readme.txt", "stray.mp4")
    index = load("folder", str(tmp_path), test_fraction=0.3, seed=0)
    assert index.dataset == "folder" and index.classes == ["RidingBikes", "juggling_balls"]
    assert index.splits == ["train", "test"]
    test = {c: sorted(r.video_id for r in index.records if r.split == "test" and r.class_name == c)
            for c in index.classes}
    assert len(test["RidingBikes"]) == 3 and len(test["juggling_balls"]) == 1         # round(0.3 n), per class
    assert len(index.records) == 14 and all(r.path and r.reject is None for r in index.records)
    assert test == {c: sorted(r.video_id for r in load("folder", str(tmp_path), test_fraction=0.3, seed=0).records
                              if r.split == "test" and r.class_name == c) for c in index.classes}   # the same draw
    other = load("folder", str(tmp_path), test_fraction=0.3, seed=1)
    assert {r.video_id for r in other.records if r.split == "test"} != {v for vs in test.values() for v in vs}
    assert load("folder", str(tmp_path)).splits == ["train"]                          # no fraction: all train


def test_train_and_test_folders_choose_the_split(tmp_path):
    _touch(tmp_path, "train/A/1.mp4", "train/A/2.mp4", "train/B/1.webm", "test/A/3.mp4")
    index = load("folder", str(tmp_path))
    assert index.classes == ["A", "B"] and sorted((r.split, r.class_name) for r in index.records) == [
        ("test", "A"), ("train", "A"), ("train", "A"), ("train", "B")]
    with pytest.raises(LayoutError, match="already choose"):
        load("folder", str(tmp_path), test_fraction=0.2)


def test_layouts_that_cannot_be_a_dataset_are_refused_naming_the_path(tmp_path):
    _touch(tmp_path, "train/A/1.mp4", "test/C/1.mp4")
    with pytest.raises(LayoutError, match="class 'C' has no folder in"):
        load("folder", str(tmp_path))
    empty = tmp_path / "empty"
    _touch(empty, "A/notes.txt")
    with pytest.raises(LayoutError, match=r"A: no video files"):
        load("folder", str(empty))
    with pytest.raises(LayoutError, match="--test-fraction is for --dataset folder"):
        load("ucf101", str(tmp_path), test_fraction=0.2)
