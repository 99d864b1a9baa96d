"""Import of published split files: ViFi-CLIP's datasets_splits/ + labels/ and FROSTER's zs_label_db/.

The files are written here in each project's format (own label orders, spaced or cased class names, `<file> <label>`
and `<file>,<label>` lines, folder prefixes), then imported against small manifests.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from shards import splits
from test_splits import UCF_CLASSES, kinetics_rows, make_store, ucf_rows

SPACED = {"ApplyEyeMakeup": "Apply Eye Makeup", "BabyCrawling": "Baby Crawling", "HandstandPushups":
          "Handstand Pushups", "YoYo": "Yo Yo"}


def file_of(video_id: str) -> str:
    return f"{video_id}.avi"


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def ucf(tmp_path):
    return splits.Manifest.load(make_store(tmp_path / "ucf", "ucf101", UCF_CLASSES, ucf_rows()))


def vifi_tree(root: Path, manifest_rows: list[dict]) -> dict:
    """A ViFi-CLIP checkout for UCF: base classes in their own order, a missing video, one wrong label."""
    base = ["Typing", "HandstandPushups", "ApplyEyeMakeup", "Punch"]          # not classInd order
    novel = ["YoYo", "Archery", "BabyCrawling"]
    write(root / "labels/ucf_101_base_labels.csv", ["id,name"] + [f"{i},{n}" for i, n in enumerate(base)])
    write(root / "labels/ucf_101_novel_labels.csv", ["id,name"] + [f"{i},{n}" for i, n in enumerate(novel)])
    split_dir = root / "datasets_splits/base2novel_splits/ucf_splits"
    by_class = {n: [r for r in manifest_rows if UCF_CLASSES[r["label"]] == n] for n in UCF_CLASSES}
    train = {}
    for s in (1, 2, 3):
        lines = []
        for i, n in enumerate(base):
            pool = [r for r in by_class[n] if r["split1"] == "train"]
            lines += [f"{file_of(r['video_id'])} {i}" for r in pool[s - 1:s + 2]]
        train[s] = lines
    train[1].append("v_Missing_g01_c01.avi 0")                                       # not in the user's copy
    train[1][0] = train[1][0].replace("HandStand", "handstand")                       # case differs from the file
    for s, lines in train.items():
        write(split_dir / f"fs_base_s{s}_train.txt", lines)
    evals = {}
    for name, classes in (("base_val", base), ("novel_val", novel)):
        evals[name] = [f"{file_of(r['video_id'])} {i}" for i, n in enumerate(classes) for r in by_class[n]
                       if r["split1"] == "test"]
        write(split_dir / f"{name}.txt", evals[name])
    # zero-shot lists: ViFi-CLIP's full label list, spaced names, alphabetical (not this manifest's order)
    zs = sorted(SPACED.get(n, n) for n in UCF_CLASSES)
    write(root / "labels/ucf_101_labels.csv", ["id,name"] + [f"{i},{n}" for i, n in enumerate(zs)])
    for s in (1, 2, 3):
        write(root / f"datasets_splits/ucf_splits/val{s}.txt",
              [f"{file_of(r['video_id'])} {zs.index(SPACED.get(UCF_CLASSES[r['label']], UCF_CLASSES[r['label']]))}"
               for r in manifest_rows if r[f"split{s}"] == "test"])
    return {"base": base, "novel": novel, "train": train, "evals": evals, "zs": zs}


@pytest.mark.filterwarnings("ignore:train_s1. 1 of 13 rows")   # re-emitted by pytest.warns(match=...) below
def test_import_vificlip_base2novel(ucf, tmp_path):
    rows = ucf_rows()
    tree = vifi_tree(tmp_path / "ViFi-CLIP", rows)
    with pytest.warns(splits.SplitWarning) as rec:
        plan = splits.base2novel(ucf, split_files=str(tmp_path), num_train_sets=3, shots=3)
    msgs = [str(w.message) for w in rec]
    assert any("train_s1: 1 of 13 rows of" in m and "v_Missing_g01_c01.avi" in m for m in msgs), msgs
    assert len(msgs) == 1
    with pytest.warns(splits.SplitWarning) as rec:
        splits.base2novel(ucf, split_files=str(tmp_path), num_train_sets=1, shots=4)
    assert any("train_s1: 4 base class(es) have fewer than 4 videos from" in str(w.message) and
               "'Typing' (3)" in str(w.message) for w in rec)
    with pytest.warns(splits.SplitWarning, match="has up to 3 videos per class, more than --shots 2"):
        splits.base2novel(ucf, split_files=str(tmp_path), num_train_sets=1, shots=2)
    assert plan.meta["source"] == "vificlip"
    out = tmp_path / "out"
    splits.write_plan(plan, str(out))
    folder = out / "base2novel/ucf101"
    rows_s1, base = splits.read_split(str(folder / "train_s1.parquet"))
    assert base.column("class_name").to_pylist() == tree["base"]                  # the published order and names
    assert base.column("source_label").to_pylist() == [UCF_CLASSES.index(n) for n in tree["base"]]
    listed = {ln.split()[0].lower(): int(ln.split()[1]) for ln in tree["train"][1]}
    got = {f"{r['video_id']}.avi".lower(): r["label"] for r in rows_s1.to_pylist()}
    assert got == {k: v for k, v in listed.items() if "missing" not in k}
    assert all(r["class_name"] == tree["base"][r["label"]] for r in rows_s1.to_pylist())
    eval_novel, novel = splits.read_split(str(folder / "eval_novel.parquet"))
    assert novel.column("class_name").to_pylist() == tree["novel"]
    assert eval_novel.num_rows == len(tree["evals"]["novel_val"])
    assert str(pq_meta(folder / "eval_novel.parquet")[b"source"], "utf-8") == "vificlip"


def pq_meta(path):
    import pyarrow.parquet as pq
    return pq.read_schema(path).metadata


def test_import_vificlip_zero_shot_and_full(ucf, tmp_path):
    rows = ucf_rows()
    tree = vifi_tree(tmp_path / "checkout", rows)
    k400 = splits.Manifest.load(make_store(tmp_path / "k400", "k400", ["archery", "typing"],
                                           kinetics_rows(["archery", "typing"])))
    plan = splits.cross(k400, ucf, split_files=str(tmp_path / "checkout"))
    assert [f.name for f in plan.files] == ["eval_1", "eval_2", "eval_3", "eval_full"]
    splits.write_plan(plan, str(tmp_path / "out"))
    for name in ("eval_1", "eval_full"):
        got, classes = splits.read_split(str(tmp_path / f"out/cross/ucf101/{name}.parquet"))
        assert classes.column("class_name").to_pylist() == tree["zs"]                # "Handstand Pushups", spaced
        for r in got.to_pylist():
            assert tree["zs"][r["label"]] == SPACED.get(UCF_CLASSES[r["source_label"]], UCF_CLASSES[r["source_label"]])
    assert got.num_rows == len(rows)          # "full": every UCF video, in the imported label order
    assert not plan.warnings


def test_import_vificlip_k600_zero_shot_lists(tmp_path):
    k400_names = ["abseiling", "typing"]
    k600_names = ["abseiling", "acting in play", "typing", "zumba", "winking"]
    k400 = splits.Manifest.load(make_store(tmp_path / "k400", "k400", k400_names, kinetics_rows(k400_names)))
    k600_rows = kinetics_rows(k600_names, train=2, val=2, test=1, prefix="q")
    k600 = splits.Manifest.load(make_store(tmp_path / "k600", "k600", k600_names, k600_rows))
    root = tmp_path / "vifi"
    for n, classes in ((1, ["zumba", "acting in play"]), (2, ["winking", "zumba"]), (3, ["acting in play", "winking"])):
        write(root / f"labels/ZS_split{n}_K600.csv", ["id,name"] + [f"{i},{c}" for i, c in enumerate(classes)])
        lines = []
        for i, c in enumerate(classes):
            for r in k600_rows:
                if k600_names[r["label"]] == c if r["label"] >= 0 else False:
                    lines.append(f"{r['split']}/{r['key']}.mp4 {i}")
        test_row = next(r for r in k600_rows if r["split"] == "test")          # unlabeled in the shard store
        write(root / f"datasets_splits/k600_splits/ZS_split{n}_K600_eval.txt", lines + [f"test/{test_row['key']}.mp4 1"])
    with pytest.warns(splits.SplitWarning) as rec:
        plan = splits.cross(k400, k600, split_files=str(root))
    assert [str(w.message).split(":")[0] for w in rec] == ["eval_1", "eval_2", "eval_3"]
    assert all("1 rows of" in str(w.message) and "holds unlabeled (a test split) and are left out" in str(w.message)
               and test_row["key"] in str(w.message) for w in rec)
    assert [[c.class_name for c in f.classes] for f in plan.files] == [["zumba", "acting in play"],
                                                                       ["winking", "zumba"],
                                                                       ["acting in play", "winking"]]
    for f in plan.files:   # youtube_id + start second find the clip, whichever split folder the list names
        assert len(f.rows) == 2 * 4
        assert all(k600.class_name[k600.col["label"][i]] == f.classes[lb].class_name for i, lb in zip(f.rows, f.labels))


def froster_tree(root: Path, manifest_rows: list[dict]) -> list[str]:
    db = root / "zs_label_db"
    base = ["Typing", "Handstand Pushups", "Apply Eye Makeup", "Punch"]
    novel = ["Yo Yo", "Archery", "Baby Crawling"]
    write(db / "B2N_ucf101/train_idx2cls.csv", [f"{i},{n}" for i, n in enumerate(base)])
    write(db / "B2N_ucf101/test_idx2cls.csv", [f"{i},{n}" for i, n in enumerate(novel)])
    plain = {SPACED.get(n, n): n for n in UCF_CLASSES}
    for s, name in ((1, "train_s1.csv"), (2, "train_2.csv"), (3, "train_s3.csv")):   # FROSTER mixes both names
        write(db / "B2N_ucf101" / name, [f"{r['video_id']}.avi {i}" for i, n in enumerate(base) for r in [
            r for r in manifest_rows if UCF_CLASSES[r["label"]] == plain[n] and r["split1"] == "train"][s - 1:s + 2]])
    for name, classes in (("val.csv", base), ("test.csv", novel)):
        write(db / "B2N_ucf101" / name, [f"{plain[n]}/{r['video_id']}.avi,{i}" for i, n in enumerate(classes)
                                         for r in manifest_rows if UCF_CLASSES[r["label"]] == plain[n]
                                         and r["split1"] == "test"])
    for s in (1, 2, 3):
        write(db / f"ucf101_split{s}/test.csv", [f"{UCF_CLASSES[r['label']]}/{r['video_id']}.avi,{r['label']}"
                                                  for r in manifest_rows if r[f"split{s}"] == "test"])
    write(db / "ucf101_full/test.csv", [f"{UCF_CLASSES[r['label']]}/{r['video_id']}.avi,{r['label']}"
                                        for r in manifest_rows])
    return base


def test_import_froster_zs_label_db(ucf, tmp_path):
    rows = ucf_rows()
    base = froster_tree(tmp_path / "FROSTER", rows)
    plan = splits.base2novel(ucf, split_files=str(tmp_path / "FROSTER"), shots=3)
    assert plan.meta["source"] == "froster" and not plan.warnings
    assert [c.class_name for c in plan.files[0].classes] == base
    assert [c.source_label for c in plan.files[0].classes] == [4, 3, 0, 6]
    eval_base = next(f for f in plan.files if f.name == "eval_base")
    assert {ucf.col["split1"][i] for i in eval_base.rows} == {"test"}
    assert all(ucf.col["label"][i] == eval_base.classes[lb].source_label for i, lb in zip(eval_base.rows,
                                                                                         eval_base.labels))
    k400 = splits.Manifest.load(make_store(tmp_path / "k400", "k400", ["typing"], kinetics_rows(["typing"])))
    cross = splits.cross(k400, ucf, split_files=str(tmp_path / "FROSTER"))
    assert [f.name for f in cross.files] == ["eval_1", "eval_2", "eval_3", "eval_full"]
    assert len(cross.files[-1].rows) == len(rows) and not cross.warnings
    assert all(f.labels == [ucf.col["label"][i] for i in f.rows] for f in cross.files)
    # with both projects' files in one folder, auto picks ViFi-CLIP's and --split-format picks either
    vifi_tree(tmp_path / "FROSTER" / "ViFi-CLIP", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", splits.SplitWarning)
        assert splits.base2novel(ucf, split_files=str(tmp_path / "FROSTER"), shots=3).meta["source"] == "vificlip"
    again = splits.base2novel(ucf, split_files=str(tmp_path / "FROSTER"), shots=3, split_format="froster")
    assert again.meta["source"] == "froster" and [c.class_name for c in again.files[0].classes] == base


@pytest.mark.filterwarnings("ignore::shards.protocols.names.SplitWarning")   # each warning is tested above
def test_published_file_errors(ucf, tmp_path):
    rows = ucf_rows()
    root = tmp_path / "vifi"
    vifi_tree(root, rows)
    with pytest.raises(splits.SplitError, match="found neither ViFi-CLIP's"):
        splits.base2novel(ucf, split_files=str(tmp_path / "ucf"))
    with pytest.raises(splits.SplitError, match="no file ending with 'base2novel_splits/ucf_splits/fs_base_s4"):
        splits.base2novel(ucf, split_files=str(root), num_train_sets=4)
    bad = root / "datasets_splits/base2novel_splits/ucf_splits/base_val.txt"
    good = bad.read_text()
    bad.write_text(good + "v_Typing_g01_c01.avi 9\n")
    with pytest.raises(splits.SplitError, match=r"base_val.txt:\d+: label 9 is outside its class list \(4 classes\)"):
        splits.base2novel(ucf, split_files=str(root))
    bad.write_text(good + "just-a-name\n")
    with pytest.raises(splits.SplitError, match=r"base_val.txt:\d+: expected '<file> <label>'"):
        splits.base2novel(ucf, split_files=str(root))
    train_line = (root / "datasets_splits/base2novel_splits/ucf_splits/fs_base_s2_train.txt").read_text().split()[:2]
    bad.write_text(good + " ".join(train_line) + "\n")               # an evaluation video also in a training set
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", splits.SplitWarning)
        with pytest.raises(splits.SplitError, match=r"eval_base: 1 evaluation video\(s\) are also in a training set"):
            splits.base2novel(ucf, split_files=str(root))
    bad.write_text("v_Nothing_g01_c01.avi 0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", splits.SplitWarning)
        with pytest.raises(splits.SplitError, match="none of its 1 rows matches a labelled sample"):
            splits.base2novel(ucf, split_files=str(root))
    first = good.splitlines()[0].split()
    bad.write_text(good.replace(" ".join(first), f"{first[0]} {(int(first[1]) + 1) % 4}", 1))  # class disagrees
    with pytest.warns(splits.SplitWarning, match=r"eval_base: 1 rows of .*base_val.txt disagree with the manifest's "
                                                 r"class and are left out: v_\w+.avi: list says"):
        plan = splits.base2novel(ucf, split_files=str(root))
    eval_base = next(f for f in plan.files if f.name == "eval_base")
    assert len(eval_base.rows) == len(good.splitlines()) - 1
    assert all(ucf.col["label"][i] == eval_base.classes[lb].source_label
               for i, lb in zip(eval_base.rows, eval_base.labels))
    bad.write_text(good)
    novel_csv = root / "labels/ucf_101_novel_labels.csv"
    saved = novel_csv.read_text()
    novel_csv.write_text(saved.replace("YoYo", "Typing"))                # a base class listed as novel too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", splits.SplitWarning)             # its rows now disagree, too
        with pytest.raises(splits.SplitError, match=r"base and novel classes overlap: \['typing'\]"):
            splits.base2novel(ucf, split_files=str(root))
    novel_csv.write_text(saved)
    lbl = root / "labels/ucf_101_base_labels.csv"
    lbl.write_text("id,name\n0,Typing\n2,Punch\n")
    with pytest.raises(splits.SplitError, match=r"ucf_101_base_labels.csv: label ids must be 0..1"):
        splits.base2novel(ucf, split_files=str(root))
