"""Generated protocol splits on small hand-built manifests: rules, determinism, disjointness, checks and errors.

The manifests here are written with the shard store's own schema (shards.manifest) but point at no real shard:
these tests are about which samples land in which split. tests/test_splits_store.py runs the same protocols on
manifests that the shard store made from generated videos.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shards import splits
from shards.manifest import classes_table, manifest_schema, rows_to_table, write_table
from shards.protocols.names import normalise, novel_classes, parse_label_list, readable_name
from shards.storage import Store

REPO = Path(__file__).resolve().parents[1]
# real class lists: ../shared next to the checkout (or FROSTLINE_SHARED); absent on users' machines
LABELS = Path(os.environ.get("FROSTLINE_SHARED") or REPO.parent / "shared") / "data" / "labels"

UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "BabyCrawling", "HandstandPushups", "Typing", "YoYo", "Punch"]


def make_store(root: Path, dataset: str, classes: list[str], rows: list[dict]) -> str:
    """A shard-store folder holding manifest.parquet and classes.parquet (no shards: only references)."""
    store = Store(str(root))
    full = []
    for n, r in enumerate(rows):
        r = dict(r)
        r.setdefault("key", r["video_id"].replace("#", "_"))
        r.setdefault("dataset", dataset)
        r.setdefault("shard", f"{r.get('split', 'all')}-{n // 10:06d}.tar")
        r.setdefault("offset", (n % 10) * 4096)
        r.setdefault("size", 4096)
        r.setdefault("class_name", classes[r["label"]] if r["label"] >= 0 else "")
        r.setdefault("num_frames", 30)
        full.append(r)
    write_table(store, "manifest.parquet", rows_to_table(full, manifest_schema(dataset)))
    write_table(store, "classes.parquet", classes_table(classes))
    return str(root)


def ucf_rows(per_class_train: dict[int, int] | None = None, classes=UCF_CLASSES) -> list[dict]:
    """UCF-like rows: groups g01..g07; split n tests groups {n, n+3} ... like the official lists, 2 clips each."""
    rows = []
    for lbl, name in enumerate(classes):
        file_name = "HandStandPushups" if name == "HandstandPushups" else name
        for g in range(1, 8):
            for c in (1, 2):
                member = {n: ("test" if g in (n, n + 3) else "train") for n in (1, 2, 3)}
                rows.append({"video_id": f"v_{file_name}_g{g:02d}_c{c:02d}", "label": lbl, "split": "all",
                             **{f"split{n}": member[n] for n in (1, 2, 3)}})
    if per_class_train:   # drop split-1 training videos of some classes to make them short
        for lbl, keep in per_class_train.items():
            train = [r for r in rows if r["label"] == lbl and r["split1"] == "train"]
            for r in train[keep:]:
                rows.remove(r)
    return rows


def kinetics_rows(classes: list[str], train: int = 6, val: int = 2, test: int = 2, prefix: str = "") -> list[dict]:
    rows = []
    for lbl, _ in enumerate(classes):
        for split, n in (("train", train), ("val", val), ("test", test)):
            for j in range(n):
                yid = f"{prefix}{lbl:03d}{split[:2]}{j:02d}xyzw"[:11]
                rows.append({"video_id": yid, "key": f"{yid}_{j:06d}_{j + 10:06d}", "split": split,
                             "label": lbl if split != "test" else -1, "time_start": j, "time_end": j + 10})
    return rows


def read_all(folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.parquet"))}


@pytest.fixture
def ucf(tmp_path):
    return splits.Manifest.load(make_store(tmp_path / "ucf", "ucf101", UCF_CLASSES, ucf_rows({1: 5, 3: 0})))


def test_rank_rule_is_pinned():
    # docs/splits.md documents this rule; a change would silently change everyone's generated splits.
    assert splits.rank(0, "base2novel/s1", "v_Typing_g01_c01") == \
        __import__("hashlib").sha256(b"frostline\x000\x00base2novel/s1\x00v_Typing_g01_c01").hexdigest()


def test_base2novel_generated_ucf(ucf, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", splits.SplitWarning)   # checked in the next test
        plan = splits.base2novel(ucf, shots=8, seed=0)
    out = tmp_path / "out"
    summary = splits.write_plan(plan, str(out))
    folder = out / "base2novel" / "ucf101"
    assert sorted(p.name for p in folder.glob("*.parquet")) == sorted(
        ["train_s1.parquet", "train_s2.parquet", "train_s3.parquet", "eval_base.parquet", "eval_novel.parquet",
         "classes_base.parquet", "classes_novel.parquet"])
    base = pq.read_table(folder / "classes_base.parquet").to_pylist()
    novel = pq.read_table(folder / "classes_novel.parquet").to_pylist()
    assert len(base) == math.ceil(len(UCF_CLASSES) / 2) and len(novel) == len(UCF_CLASSES) // 2
    assert [c["label"] for c in base] == list(range(len(base)))
    assert {c["class_name"] for c in base}.isdisjoint({c["class_name"] for c in novel})
    assert {c["class_name"] for c in base} | {c["class_name"] for c in novel} == set(UCF_CLASSES)
    assert all(c["prompt"] == readable_name(c["class_name"]) for c in base + novel)   # no descriptions given
    assert {"Apply Eye Makeup", "Yoyo"} <= {c["prompt"] for c in base + novel}
    # each half keeps the dataset's label order
    assert [c["source_label"] for c in base] == sorted(c["source_label"] for c in base)

    rows = {name: splits.read_split(str(folder / f"{name}.parquet"))[0].to_pylist()
            for name in ("train_s1", "train_s2", "train_s3", "eval_base", "eval_novel")}
    manifest = {r["key"]: r for r in pq.read_table(Path(ucf.url) / "manifest.parquet").to_pylist()}
    base_src = {c["source_label"]: c for c in base}
    for name in ("train_s1", "train_s2", "train_s3"):
        per_class = {}
        for r in rows[name]:
            src = manifest[r["key"]]
            assert src["split1"] == "train" and r["source_label"] == src["label"] in base_src
            assert base_src[r["source_label"]]["label"] == r["label"]
            per_class[r["class_name"]] = per_class.get(r["class_name"], 0) + 1
        expected = {c["class_name"]: min(8, sum(1 for m in manifest.values() if m["label"] == c["source_label"]
                                                and m["split1"] == "train")) for c in base}
        assert per_class == {k: v for k, v in expected.items() if v}
    for name, classes in (("eval_base", base), ("eval_novel", novel)):
        keys = {r["key"] for r in rows[name]}
        want = {k for k, m in manifest.items() if m["split1"] == "test" and m["label"] in
                {c["source_label"] for c in classes}}
        assert keys == want
        train_keys = {r["key"] for n in ("train_s1", "train_s2", "train_s3") for r in rows[n]}
        assert keys.isdisjoint(train_keys)
    # rows carry absolute shard URLs and are sorted by (shard, offset) for sequential subset reads
    r0 = rows["eval_base"]
    assert all(os.path.isabs(r["shard"]) and r["shard"].startswith(str(Path(ucf.url))) for r in r0)
    assert [(r["shard"], r["offset"]) for r in r0] == sorted((r["shard"], r["offset"]) for r in r0)
    assert pq.read_schema(folder / "eval_novel.parquet").metadata[b"classes_file"] == b"classes_novel.parquet"
    assert pq.read_schema(folder / "train_s2.parquet").metadata[b"classes_file"] == b"classes_base.parquet"
    table = splits.format_summary(summary)
    assert "base2novel/ucf101/train_s1.parquet" in table and "classes" in table.splitlines()[0]


def test_short_class_warning_names_every_short_class(ucf):
    shortest = {UCF_CLASSES[1]: 5, UCF_CLASSES[3]: 0}
    for seed in range(6):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            plan = splits.base2novel(ucf, shots=8, seed=seed)
        msg = " ".join(str(w.message) for w in rec if w.category is splits.SplitWarning)
        base = {c.class_name for c in plan.files[0].classes}
        short = {n: c for n, c in shortest.items() if n in base}
        assert len(plan.warnings) == (1 if short else 0) and msg == " ".join(plan.warnings)
        for name, count in short.items():
            assert f"{name!r} ({count})" in msg and "fewer than 8 training videos" in msg
        # the short class keeps all its videos in every training set
        for name, count in short.items():
            lbl = next(c.label for c in plan.files[0].classes if c.class_name == name)
            assert all(f.labels.count(lbl) == count for f in plan.files[:3])


@pytest.mark.filterwarnings("ignore::shards.protocols.names.SplitWarning")   # a short class; tested above
def test_determinism_same_seed_identical_files_other_seed_other_samples(ucf, tmp_path):
    outs = []
    for run, seed in enumerate((0, 0, 1)):
        plan = splits.base2novel(splits.Manifest.load(ucf.url), shots=3, seed=seed)
        splits.write_plan(plan, str(tmp_path / f"run{run}"))
        outs.append(read_all(str(tmp_path / f"run{run}" / "base2novel" / "ucf101")))
    assert outs[0] == outs[1]
    assert outs[0]["train_s1.parquet"] != outs[2]["train_s1.parquet"]
    keys = [{r["key"] for r in splits.read_split(str(tmp_path / "run0/base2novel/ucf101" / f"train_s{n}.parquet"))[0]
             .to_pylist()} for n in (1, 2, 3)]
    assert keys[0] != keys[1] and keys[1] != keys[2]   # the three training sets are different draws


def test_generated_draw_is_stable_when_other_videos_disappear(tmp_path):
    rows = ucf_rows()
    a = splits.base2novel(splits.Manifest.load(make_store(tmp_path / "a", "ucf101", UCF_CLASSES, rows)), shots=3)
    lost = [r for r in rows if r["video_id"] != "v_Typing_g02_c01"]
    b = splits.base2novel(splits.Manifest.load(make_store(tmp_path / "b", "ucf101", UCF_CLASSES, lost)), shots=3)
    ka = {k for f in a.files[:3] for k in f.keys()} - {"v_Typing_g02_c01"}
    kb = {k for f in b.files[:3] for k in f.keys()}
    assert len(ka ^ kb) <= 3   # at most the lost video's replacements differ


def test_base2novel_kinetics_uses_train_and_val_and_skips_unlabelled(tmp_path):
    classes = [f"class {i}" for i in range(9)]
    m = splits.Manifest.load(make_store(tmp_path / "k", "k400", classes, kinetics_rows(classes)))
    plan = splits.base2novel(m, shots=4, seed=3, num_train_sets=2)
    assert [f.name for f in plan.files] == ["train_s1", "train_s2", "eval_base", "eval_novel"]
    assert len(plan.files[0].classes) == 5 and len(plan.files[-1].classes) == 4
    for f in plan.files:
        splits_of = {m.col["split"][i] for i in f.rows}
        assert splits_of == ({"train"} if f.name.startswith("train") else {"val"})
    assert all(len(f.rows) == 5 * 4 for f in plan.files[:2])
    assert not plan.warnings


def test_cross_ucf_hmdb_official_splits_and_full(tmp_path):
    k400_classes = ["abseiling", "archery", "typing"]
    k400 = splits.Manifest.load(make_store(tmp_path / "k400", "k400", k400_classes, kinetics_rows(k400_classes)))
    ucf = splits.Manifest.load(make_store(tmp_path / "ucf", "ucf101", UCF_CLASSES, ucf_rows()))
    hmdb_rows = [dict(r, video_id=r["video_id"].replace("v_", "clip#"), split1="unused" if r["video_id"].endswith(
        "c02") and r["split1"] == "train" else r["split1"]) for r in ucf_rows()]
    hmdb = splits.Manifest.load(make_store(tmp_path / "hmdb", "hmdb51", UCF_CLASSES, hmdb_rows))
    out = tmp_path / "out"
    train = splits.cross_train(k400)
    splits.write_plan(train, str(out))
    t_rows, t_classes = splits.read_split(str(out / "cross/k400/train.parquet"))
    assert t_classes.num_rows == 3 and t_rows.num_rows == 3 * 6
    assert set(t_rows.column("label").to_pylist()) == {0, 1, 2}
    for m in (ucf, hmdb):
        plan = splits.cross(k400, m)
        splits.write_plan(plan, str(out))
        folder = out / "cross" / m.dataset
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"eval_{n}.parquet" for n in (1, 2, 3)] + [f"classes_{n}.parquet" for n in (1, 2, 3)]
            + ["eval_full.parquet", "classes_full.parquet", "split_set.json"])
        manifest = pq.read_table(Path(m.url) / "manifest.parquet").to_pylist()
        for n in (1, 2, 3):
            rows, classes = splits.read_split(str(folder / f"eval_{n}.parquet"))
            assert classes.num_rows == len(UCF_CLASSES)
            assert {r["key"] for r in rows.to_pylist()} == {r["key"] for r in manifest if r[f"split{n}"] == "test"}
            assert rows.column("label").to_pylist() == rows.column("source_label").to_pylist()
        full = {r["key"] for r in splits.read_split(str(folder / "eval_full.parquet"))[0].to_pylist()}
        if m.dataset == "ucf101":
            assert full == {r["key"] for r in manifest}
        else:
            assert full == {r["key"] for r in manifest if r["split1"] in ("train", "test")} != \
                {r["key"] for r in manifest}


K400_NAMES = ["abseiling", "dying hair", "passing American football (not in game)", "skiing (not slalom or "
              "crosscountry)", "typing"]
K600_NAMES = ["abseiling", "acting in play", "adjusting glasses", "dyeing hair", "passing american football "
              "(not in game)", "Skiing (Not Slalom or Crosscountry)", "typing", "zumba", "yarn spinning", "winking"]


@pytest.fixture
def kinetics(tmp_path):
    k400 = splits.Manifest.load(make_store(tmp_path / "k400", "k400", K400_NAMES, kinetics_rows(K400_NAMES)))
    k600 = splits.Manifest.load(make_store(tmp_path / "k600", "k600", K600_NAMES,
                                           kinetics_rows(K600_NAMES, train=1, val=3, prefix="z")))
    return k400, k600


def test_cross_k600_novel_classes_by_normalised_names(kinetics, tmp_path):
    k400, k600 = kinetics
    plan = splits.cross(k400, k600, classes_per_set=4, seed=0)
    # case and punctuation differences match; the renamed "dyeing hair" does not (as in the real lists)
    novel = {"acting in play", "adjusting glasses", "dyeing hair", "zumba", "yarn spinning", "winking"}
    assert any("6 novel classes found by comparing normalised" in n for n in plan.notes)
    assert [f.name for f in plan.files] == ["eval_1", "eval_2", "eval_3"]
    sets = []
    for f in plan.files:
        names = [c.class_name for c in f.classes]
        assert len(names) == 4 and set(names) <= novel
        assert [c.source_label for c in f.classes] == sorted(c.source_label for c in f.classes)
        assert {k600.col["split"][i] for i in f.rows} == {"val"} and len(f.rows) == 4 * 3
        sets.append(frozenset(names))
    assert len(set(sets)) > 1          # the three subsets are separate draws
    again = splits.cross(k400, k600, classes_per_set=4, seed=0)
    assert [[c.class_name for c in f.classes] for f in again.files] == [[c.class_name for c in f.classes]
                                                                       for f in plan.files]
    splits.write_plan(plan, str(tmp_path / "out"))
    rows, classes = splits.read_split(str(tmp_path / "out/cross/k600/eval_2.parquet"))
    assert classes.column("class_name").to_pylist() == [c.class_name for c in plan.files[1].classes]


def test_cross_k600_explicit_novel_list(kinetics, tmp_path):
    k400, k600 = kinetics
    listing = tmp_path / "novel.txt"
    listing.write_text("# the published list\nActing in play\nzumba\nwinking\n")
    plan = splits.cross(k400, k600, classes_per_set=2, novel_classes_text=listing.read_text(),
                        novel_classes_path=str(listing))
    assert any("3 novel classes from" in n for n in plan.notes)
    assert all({c.class_name for c in f.classes} <= {"acting in play", "zumba", "winking"} for f in plan.files)
    with pytest.raises(splits.SplitError, match=r"novel.txt: 1 class\(es\) not in .*'jumping jacks'"):
        splits.cross(k400, k600, classes_per_set=2, novel_classes_text="zumba\njumping jacks\n",
                     novel_classes_path=str(listing))
    with pytest.raises(splits.SplitError, match="fewer than --classes-per-set 5"):
        splits.cross(k400, k600, classes_per_set=5, novel_classes_text=listing.read_text(),
                     novel_classes_path=str(listing))
    with pytest.warns(splits.SplitWarning, match="also K400 classes.*typing"):
        splits.cross(k400, k600, classes_per_set=2, novel_classes_text="typing\nzumba\n", novel_classes_path="x")


@pytest.mark.skipif(not LABELS.is_dir(), reason="the real class lists (../shared/data/labels) are not here")
def test_real_k600_vs_k400_class_lists(capsys):
    k400 = parse_label_list((LABELS / "kinetics_400_labels.csv").read_text(), "k400")
    k600 = parse_label_list((LABELS / "kinetics_600_labels.csv").read_text(), "k600")
    exact = {n for _, n in k600} - {n for _, n in k400}
    novel = novel_classes(k600, k400)
    print(f"K600 classes new relative to K400: exact names {len(exact)}, normalised names {len(novel)} "
          f"(papers: 220)")
    assert len(exact) == 232 and len(novel) == 231
    names = {n for _, n in novel}
    assert "dyeing hair" in names and "passing american football (not in game)" not in names
    # every other real list normalises without collisions (SSv2 names contain commas: split on the first only)
    for f, n in (("ucf_101_labels.csv", 101), ("hmdb_51_labels.csv", 51), ("ssv2_174_labels.csv", 174)):
        lst = parse_label_list((LABELS / f).read_text(), f)
        assert len(lst) == n and len({normalise(x) for _, x in lst}) == n
    assert "K600 classes new relative to K400" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::shards.protocols.names.SplitWarning")
def test_class_names_prompts(ucf, tmp_path):
    prompts = {"0": "Apply Eye Makeup: a person applies makeup around the eyes.",
               "handstand pushups": "Handstand Pushups: push-ups upside down.",
               "4": "a person typing on a keyboard"}   # numeric key, no "Name:" part: the dataset's label id
    plan = splits.base2novel(ucf, shots=2, class_names=json.dumps(prompts), class_names_path="p.json")
    classes = {c.class_name: c.prompt for f in plan.files for c in f.classes}
    assert classes["ApplyEyeMakeup"] == prompts["0"]
    assert classes["HandstandPushups"] == prompts["handstand pushups"]
    assert classes["Typing"] == prompts["4"]
    assert classes["BabyCrawling"] == "Baby Crawling"          # no entry: the readable name
    assert any("3 of 7 classes got a description from p.json" in n for n in plan.notes)
    assert any("no description for 4 class(es)" in w and "'BabyCrawling'" in w for w in plan.warnings)
    with pytest.raises(splits.SplitError, match=r"p.json: 2 entries name no class of the dataset: 'Juggling', '99'"):
        splits.base2novel(ucf, class_names=json.dumps({"Juggling": "x", "99": "y"}), class_names_path="p.json")
    # FROSTER's layout: the key is an index in the file's own order, the Name decides the class
    plan = splits.base2novel(ucf, shots=2, class_names=json.dumps({"1": "Typing: a person types."}),
                             class_names_path="p.json")
    classes = {c.class_name: c.prompt for f in plan.files for c in f.classes}
    assert classes["Typing"] == "Typing: a person types." and classes["Archery"] == "Archery"
    with pytest.raises(splits.SplitError, match="entry names no class of the dataset: 'Juggling'"):
        splits.base2novel(ucf, class_names=json.dumps({"0": "Juggling: balls."}), class_names_path="p.json")
    with pytest.raises(splits.SplitError, match="entries '0' and '1' both describe class 'Typing'"):
        splits.base2novel(ucf, class_names=json.dumps({"0": "Typing: a.", "1": "Typing: b."}),
                          class_names_path="p.json")
    with pytest.raises(splits.SplitError, match="not valid JSON"):
        splits.base2novel(ucf, class_names="{", class_names_path="p.json")


def test_clear_errors(tmp_path, ucf):
    with pytest.raises(splits.SplitError, match=r"manifest.parquet does not exist"):
        splits.Manifest.load(str(tmp_path / "nowhere"))
    with pytest.raises(splits.SplitError, match="not 'k400'"):
        splits.Manifest.load(ucf.url, "k400")
    with pytest.raises(splits.SplitError, match="base2novel is defined for"):
        k600 = splits.Manifest.load(make_store(tmp_path / "k6", "k600", ["a", "b"], kinetics_rows(["a", "b"])))
        splits.base2novel(k600)
    with pytest.raises(splits.SplitError, match="three official test splits"):
        splits.cross(k600, ucf, num_eval_sets=4)
    nosplit = [{k: v for k, v in r.items() if k != "split1"} for r in ucf_rows()]
    table = rows_to_table([dict(r, key=r["video_id"], dataset="ucf101", shard="a.tar", offset=0, size=1,
                                class_name="x", num_frames=1) for r in nosplit], manifest_schema("k400"))
    store = Store(str(tmp_path / "bad"))
    write_table(store, "manifest.parquet", table)
    write_table(store, "classes.parquet", classes_table(UCF_CLASSES))
    with pytest.raises(splits.SplitError, match="no column 'split1'"):
        splits.base2novel(splits.Manifest.load(store.url, "ucf101"))
    broken = tmp_path / "x.parquet"
    pq.write_table(pq.read_table(Path(ucf.url) / "classes.parquet"), broken)
    with pytest.raises(splits.SplitError, match="not a split file"):
        splits.read_split(str(broken))


def test_written_splits_keep_one_split_label_per_dataset_label(ucf, tmp_path):
    """The pipeline labels clips from the label stored in the shard: a split breaking that is never written."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", splits.SplitWarning)
        plan = splits.base2novel(ucf, shots=2)
    f = plan.files[-1]
    f.labels[0] = (f.labels[0] + 1) % len(f.classes)
    with pytest.raises(splits.SplitError, match=r"base2novel/ucf101/eval_novel: sample '.*' \(dataset label \d+\) "
                                                r"cannot be split label \d+: its class is already split label"):
        splits.write_plan(plan, str(tmp_path))
    assert not (tmp_path / "base2novel" / "ucf101" / "eval_novel.parquet").exists()
