"""Protocol splits on manifests that the shard store made from generated videos, through the command line.

Checks that the split files feed the pipeline: every row's (shard, offset, size) is one ranged read that yields
exactly that sample's tar members, the sample's stored label and frame count agree with the row, and a subset
DALI index built from the rows lists exactly the split's samples of each shard. Also on s3:// (moto_server).
"""
from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
import tarfile
import warnings
from collections import defaultdict
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from shards import splits
from shards.generated import synthetic
from shards.convert import convert_dataset
from shards.index import parse_index, subset_index

REPO = Path(__file__).resolve().parents[1]
TOOL = [sys.executable, str(REPO / "tools" / "make_splits.py")]


def convert(kind: str, maker, root: Path, **kw) -> str:
    syn = maker(str(root / kind), **kw)
    out = str(root / f"{kind}_store")
    convert_dataset(kind, syn.root, out, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Tiny shard stores, converted once per module: UCF101 and HMDB51 with quirks, K400 and K600."""
    root = tmp_path_factory.mktemp("split_stores")
    out = {"ucf101": convert("ucf101", synthetic.make_ucf101, root, num_classes=6, groups=8, quirks=True)}
    if hasattr(synthetic, "make_hmdb51"):
        out["hmdb51"] = convert("hmdb51", synthetic.make_hmdb51, root, num_classes=3, per_class=4)
    if hasattr(synthetic, "make_kinetics"):
        # K600 = K400's five classes plus three new ones ("yoga", "zumba", "tai chi")
        out["k400"] = convert("k400", synthetic.make_kinetics, root, dataset="k400", num_classes=5, per_class=2)
        out["k600"] = convert("k600", synthetic.make_kinetics, root, dataset="k600", num_classes=8, per_class=1,
                              quirks=False)
    if hasattr(synthetic, "make_ssv2"):
        out["ssv2"] = convert("ssv2", synthetic.make_ssv2, root, num_classes=5, train=10, val=5, test=1,
                              quirks=False)
    return out


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(TOOL + list(args), capture_output=True, text=True, timeout=120, cwd=REPO)


def check_rows_feed_the_pipeline(split_file: str) -> int:
    """Each row is one ranged read of its sample; a subset index of each shard lists exactly the split's rows."""
    rows, classes = splits.read_split(split_file)
    by_shard = defaultdict(list)
    for r in rows.to_pylist():
        fs, path = fsspec.core.url_to_fs(r["shard"])
        with fs.open(path, "rb") as f:
            f.seek(r["offset"])
            chunk = f.read(r["size"])
        with tarfile.open(fileobj=io.BytesIO(chunk)) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        assert {n.split(".", 1)[0] for n in members} == {r["key"]}, r
        assert {n.split(".", 1)[1] for n in members} >= {"mp4", "json", "lbl", "nfr"}
        assert struct.unpack("<i", members[f"{r['key']}.lbl"])[0] == r["source_label"]
        assert struct.unpack("<i", members[f"{r['key']}.nfr"])[0] == r["num_frames"]
        assert json.loads(members[f"{r['key']}.json"])["video_id"] == r["video_id"]
        assert classes.column("class_name")[r["label"]].as_py() == r["class_name"]
        by_shard[r["shard"]].append(r)
    for shard, members in by_shard.items():
        idx = open_text(shard[: -len(".tar")] + ".idx")     # the shard's DALI index, beside it
        sub = parse_index(subset_index(idx, [r["offset"] for r in members]))
        assert sorted(s.key for s in sub) == sorted(r["key"] for r in members)
    return rows.num_rows


def open_text(url: str) -> str:
    with fsspec.open(url, "r") as f:
        return f.read()


def summary_counts(stdout: str) -> dict[str, tuple[int, str]]:
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(".parquet"):
            out[parts[0]] = (int(parts[1]), parts[2])
    return out


pytestmark = pytest.mark.slow   # converts four tiny datasets once (~20 s on 2 cores)


def test_cli_base2novel_from_shard_store(stores, tmp_path):
    out = tmp_path / "splits"
    res = run_tool("--protocol", "base2novel", "--dataset", "ucf101", "--manifest", stores["ucf101"],
                   "--out", str(out), "--shots", "6", "--seed", "0")
    assert res.returncode == 0, res.stderr
    # the quirky first videos were rejected by the shard store, so some base classes are short: named, not silent
    assert "WARNING: base2novel/ucf101:" in res.stderr and "fewer than 6 training videos" in res.stderr
    counts = summary_counts(res.stdout)
    assert set(counts) == {f"base2novel/ucf101/{n}.parquet" for n in (
        "train_s1", "train_s2", "train_s3", "eval_base", "eval_novel", "classes_base", "classes_novel")}
    manifest = pq.read_table(os.path.join(stores["ucf101"], "manifest.parquet")).to_pylist()
    keys = {}
    for name in ("train_s1", "train_s2", "train_s3", "eval_base", "eval_novel"):
        path = str(out / "base2novel" / "ucf101" / f"{name}.parquet")
        n = check_rows_feed_the_pipeline(path)
        assert counts[f"base2novel/ucf101/{name}.parquet"] == (3, str(n))
        keys[name] = {r["key"] for r in splits.read_split(path)[0].to_pylist()}
    split1 = {r["key"]: r["split1"] for r in manifest}
    assert all(split1[k] == "train" for k in keys["train_s1"] | keys["train_s2"] | keys["train_s3"])
    assert all(split1[k] == "test" for k in keys["eval_base"] | keys["eval_novel"])
    assert len(keys["eval_base"]) + len(keys["eval_novel"]) == sum(1 for r in manifest if r["split1"] == "test")
    again = run_tool("--protocol", "base2novel", "--dataset", "ucf101", "--manifest", stores["ucf101"],
                     "--out", str(tmp_path / "again"), "--shots", "6", "--seed", "0")
    assert again.returncode == 0
    for p in (out / "base2novel" / "ucf101").iterdir():
        other = tmp_path / "again" / "base2novel" / "ucf101" / p.name
        if p.name == "split_set.json":    # records the run's own options (--out differs): the same files
            assert json.loads(p.read_text())["files"] == json.loads(other.read_text())["files"]
        else:
            assert p.read_bytes() == other.read_bytes()


def test_cli_errors_are_clear(stores, tmp_path):
    res = run_tool("--protocol", "base2novel", "--dataset", "k600", "--manifest", stores["ucf101"], "--out", "x")
    assert res.returncode == 2 and "--protocol base2novel takes --dataset" in res.stderr
    res = run_tool("--protocol", "base2novel", "--dataset", "hmdb51", "--manifest", stores["ucf101"],
                   "--out", str(tmp_path))
    assert res.returncode == 2 and "error:" in res.stderr and "not 'hmdb51'" in res.stderr
    bad = tmp_path / "prompts.json"
    bad.write_text(json.dumps({"Juggling": "a person juggles"}))
    res = run_tool("--protocol", "base2novel", "--dataset", "ucf101", "--manifest", stores["ucf101"],
                   "--out", str(tmp_path), "--class-names", str(bad))
    assert res.returncode == 2 and "entry names no class of the dataset: 'Juggling'" in res.stderr


@pytest.mark.skipif(not hasattr(synthetic, "make_kinetics"), reason="shard store has no Kinetics generator yet")
def test_cli_cross_dataset_from_shard_stores(stores, tmp_path):
    out = tmp_path / "splits"
    for ds in ("ucf101", "hmdb51", "k600"):
        if ds not in stores:
            continue
        extra = ["--classes-per-set", "2"] if ds == "k600" else []
        res = run_tool("--protocol", "cross", "--train-manifest", stores["k400"], "--eval-manifest", stores[ds],
                       "--dataset", ds, "--out", str(out), *extra)
        assert res.returncode == 0, res.stderr
        if ds == "k600":
            assert "novel classes found by comparing normalised" in res.stdout
        counts = summary_counts(res.stdout)
        assert "cross/k400/train.parquet" in counts
        for name, (n_classes, samples) in counts.items():
            if "/eval_" in name:
                assert check_rows_feed_the_pipeline(str(out / name)) == int(samples)
    check_rows_feed_the_pipeline(str(out / "cross" / "k400" / "train.parquet"))
    listing = tmp_path / "novel.txt"
    listing.write_text("Zumba\nyoga\n")
    res = run_tool("--protocol", "cross", "--train-manifest", stores["k400"], "--eval-manifest", stores["k600"],
                   "--dataset", "k600", "--out", str(tmp_path / "explicit"), "--classes-per-set", "2",
                   "--num-eval-sets", "1", "--novel-classes", str(listing))
    assert res.returncode == 0, res.stderr
    assert f"K600: 2 novel classes from {listing}" in res.stdout
    _, classes = splits.read_split(str(tmp_path / "explicit/cross/k600/eval_1.parquet"))
    assert sorted(classes.column("class_name").to_pylist()) == ["yoga", "zumba"]


def test_splits_on_s3(stores, s3_bucket):
    """Manifest read from s3://, splits written to s3://, rows point at s3:// shards and read back by range."""
    fs = fsspec.filesystem("s3")
    fs.put(stores["ucf101"].rstrip("/") + "/", f"{s3_bucket}/ucf", recursive=True)
    fs.invalidate_cache()
    url = f"s3://{s3_bucket}/ucf"
    res = run_tool("--protocol", "base2novel", "--dataset", "ucf101", "--manifest", url,
                   "--out", f"s3://{s3_bucket}/splits", "--shots", "2", "--num-train-sets", "1")
    assert res.returncode == 0, res.stderr
    path = f"s3://{s3_bucket}/splits/base2novel/ucf101/train_s1.parquet"
    rows, classes = splits.read_split(path)
    assert rows.num_rows > 0 and classes.column_names[:3] == ["label", "class_name", "prompt"]
    assert all(s.startswith(f"s3://{s3_bucket}/ucf/") for s in rows.column("shard").to_pylist())
    assert check_rows_feed_the_pipeline(path) == rows.num_rows


def test_base2novel_every_dataset_from_shard_stores(stores, tmp_path):
    """K400, HMDB51, UCF101 and SSv2 stores: halves, train/eval membership, rows that read back as samples."""
    for ds in splits.B2N_DATASETS:
        if ds not in stores:
            continue
        m = splits.Manifest.load(stores[ds], ds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", splits.SplitWarning)   # the stores' rejects leave some classes short
            plan = splits.base2novel(m, shots=2, seed=1)
        base, novel = plan.files[0].classes, plan.files[-1].classes
        assert len(base) == math.ceil(len(m.classes) / 2) and len(base) + len(novel) == len(m.classes)
        train_split = {"ucf101": "split1", "hmdb51": "split1"}.get(ds, "split")
        for f in plan.files:
            want = {"train"} if f.name.startswith("train") else ({"test"} if ds in ("ucf101", "hmdb51") else {"val"})
            assert {m.col[train_split][i] for i in f.rows} <= want, (ds, f.name)
        assert plan.files[0].rows and plan.files[-2].rows and plan.files[-1].rows, ds
        splits.write_plan(plan, str(tmp_path))
        for name in ("train_s1", "eval_base", "eval_novel"):
            check_rows_feed_the_pipeline(str(tmp_path / "base2novel" / ds / f"{name}.parquet"))


def test_cli_imports_vificlip_files_for_a_shard_store(stores, tmp_path):
    """ViFi-CLIP files written for the full dataset: rejected videos show up as unmatched rows, counted."""
    manifest = pq.read_table(os.path.join(stores["ucf101"], "manifest.parquet")).to_pylist()
    rejects = pq.read_table(os.path.join(stores["ucf101"], "rejects.parquet")).to_pylist()
    classes = pq.read_table(os.path.join(stores["ucf101"], "classes.parquet")).column("class_name").to_pylist()
    base, novel = classes[::-1][:3], classes[::-1][3:]                # the published order is its own
    root = tmp_path / "ViFi-CLIP"
    write = lambda rel, lines: (root / rel).parent.mkdir(parents=True, exist_ok=True) or (root / rel).write_text(
        "\n".join(lines) + "\n")
    write("labels/ucf_101_base_labels.csv", ["id,name"] + [f"{i},{c}" for i, c in enumerate(base)])
    write("labels/ucf_101_novel_labels.csv", ["id,name"] + [f"{i},{c}" for i, c in enumerate(novel)])
    videos = [(r["video_id"], r["class_name"], r["split1"]) for r in manifest] + \
             [(r["video_id"], r["class_name"], "train") for r in rejects]
    d = "datasets_splits/base2novel_splits/ucf_splits"
    for s in (1, 2, 3):
        write(f"{d}/fs_base_s{s}_train.txt", [f"{v}.avi {base.index(c)}" for v, c, sp in videos
                                              if c in base and sp == "train"])
    write(f"{d}/base_val.txt", [f"{v}.avi {base.index(c)}" for v, c, sp in videos if c in base and sp == "test"])
    write(f"{d}/novel_val.txt", [f"{v}.avi {novel.index(c)}" for v, c, sp in videos if c in novel and sp == "test"])
    res = run_tool("--protocol", "base2novel", "--dataset", "ucf101", "--manifest", stores["ucf101"],
                   "--out", str(tmp_path / "out"), "--from-split-files", str(tmp_path))
    assert res.returncode == 0, res.stderr
    lost = [v for v, c, _ in videos[len(manifest):] if c in base]
    if lost:
        assert f"match no manifest sample (missing or rejected videos), e.g. ['{lost[0]}.avi'" in res.stderr
        assert f"{len(lost)} of" in res.stderr
    rows, cls = splits.read_split(str(tmp_path / "out/base2novel/ucf101/train_s1.parquet"))
    assert cls.column("class_name").to_pylist() == base
    assert rows.num_rows == sum(1 for r in manifest if r["class_name"] in base and r["split1"] == "train")
    assert pq.read_schema(tmp_path / "out/base2novel/ucf101/eval_novel.parquet").metadata[b"source"] == b"vificlip"
