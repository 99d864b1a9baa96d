"""Converting each dataset: the whole output contract, on tiny generated videos in each official layout."""
import os
import subprocess

import pyarrow.parquet as pq
import pytest

from shards.convert import convert_dataset, merge, parse_part, parse_size
from shards.manifest import read_manifest, read_rejects
from shards.storage import Store
from shards.generated.synthetic import make_hmdb51, make_kinetics, make_ssv2, make_ucf101
from shards_checks import check_store, dali_frame_counts, probe

MAKERS = {"ucf101": make_ucf101, "hmdb51": make_hmdb51, "k400": make_kinetics, "ssv2": make_ssv2}


@pytest.fixture(scope="module", params=sorted(MAKERS))
def converted(request, tmp_path_factory):
    name = request.param
    syn = MAKERS[name](str(tmp_path_factory.mktemp(f"{name}_src")))
    out = str(tmp_path_factory.mktemp(f"{name}_out"))
    summary = convert_dataset(name, syn.root, out, workers=1, shard_size="30kB", progress=False)
    return name, syn, out, summary


def test_order_by_class_writes_class_after_class(tmp_path):
    """`order="by-class"` (make_shards --order by-class): each split's shards hold its classes one after another,
    the layout of datasets written folder by folder; the default mixes classes inside shards."""
    syn = make_ucf101(str(tmp_path / "src"), num_classes=4, groups=4, quirks=False)
    for order in ("by-class", "shuffled"):
        out = str(tmp_path / order)
        convert_dataset("ucf101", syn.root, out, workers=1, shard_size="8kB", progress=False, order=order)
        rows = read_manifest(out).to_pylist()
        for split in {r["split"] for r in rows}:
            mine = sorted((r for r in rows if r["split"] == split), key=lambda r: (r["shard"], r["offset"]))
            labels = [r["label"] for r in mine]
            assert (labels == sorted(labels)) == (order == "by-class"), (order, split, labels)
    with pytest.raises(ValueError, match="by-class"):
        convert_dataset("ucf101", syn.root, str(tmp_path / "bad"), workers=1, progress=False, order="random")


def test_contract(converted):
    name, syn, out, summary = converted
    rows = list(check_store(out, syn).values())
    assert summary.samples == len(rows) and sum(summary.rejects.values()) == len(syn.rejects)
    assert summary.shards == len({r["shard"] for r in rows}) and summary.merged
    assert summary.bytes == sum(r["bytes"] for r in rows)
    by_vid = {r["video_id"]: r for r in rows}
    for vid in syn.portrait:
        assert by_vid[vid]["width"] < by_vid[vid]["height"]
    for vid in syn.short:
        assert by_vid[vid]["num_frames"] < 8
    assert syn.audio <= set(by_vid)            # audio is dropped (check_stream), the video is kept
    for vid in syn.audio:
        assert probe(os.path.join(syn.root, by_vid[vid]["source_path"]))["audio"] == 1
    shards = {r["shard"] for r in rows}
    expected = {"_work", "classes.parquet", "manifest.parquet", "rejects.parquet"} | shards | {
        s[:-4] + ".idx" for s in shards}
    assert set(os.listdir(out)) == expected     # no scratch files or partial shards left behind


def test_dataset_columns(converted):
    name, syn, out, _ = converted
    m = read_manifest(out)
    rows = m.to_pylist()
    if name in ("ucf101", "hmdb51"):
        assert {r["split"] for r in rows} == {"all"}
        values = {r[f"split{k}"] for r in rows for k in (1, 2, 3)}
        assert {"train", "test"} <= values <= {"train", "test", "unused"}
    if name == "k400":
        assert {r["split"] for r in rows} == {"train", "val", "test"}
        assert all(r["time_end"] - r["time_start"] == 10 for r in rows)
        assert all(r["label"] == -1 for r in rows if r["split"] == "test")
    if name == "ssv2":
        assert all(r["source_fps"] == 12.0 and r["fps"] == 30.0 for r in rows)
        assert all(abs(r["num_frames"] - 24 / 12 * 30) <= 1 or r["num_frames"] < 8 for r in rows)
        assert all(r["template"] and r["placeholders"] for r in rows if r["split"] != "test")
    # rows come in split order, then shard, then offset
    order = [(r["shard"], r["offset"]) for r in rows]
    split_rank = {s: i for i, s in enumerate(dict.fromkeys(r["split"] for r in rows))}
    assert order == [x for _, x in sorted(zip([split_rank[r["split"]] for r in rows], order))]


def test_dali_reads_shards_with_index_files(converted):
    name, syn, out, _ = converted
    rows = {r["key"]: r for r in read_manifest(out).to_pylist()}
    shards = sorted({r["shard"] for r in rows.values()})
    counts = dali_frame_counts([os.path.join(out, s) for s in shards],
                               [os.path.join(out, s[:-4] + ".idx") for s in shards])
    assert set(counts) == set(rows)
    for key, (decoded, nfr, label) in counts.items():
        assert decoded == nfr == rows[key]["num_frames"]
        assert label == rows[key]["label"]


def test_rejects_table(converted):
    name, syn, out, _ = converted
    rej = read_rejects(out)
    assert rej.column_names[:5] == ["video_id", "source_path", "split", "class_name", "reason"]
    for r in rej.to_pylist():
        assert r["source_path"] and r["split"] and os.sep + "tmp" not in r["reason"]


def test_deterministic_and_parallel_identical(tmp_path, synthetic_ucf101, ucf101_shards):
    out, _ = ucf101_shards
    again = str(tmp_path / "again")
    convert_dataset("ucf101", synthetic_ucf101.root, again, workers=2, shard_size="24kB", progress=False)
    assert read_manifest(out).equals(read_manifest(again))
    for f in os.listdir(out):
        if f.endswith((".tar", ".idx")):
            assert open(os.path.join(out, f), "rb").read() == open(os.path.join(again, f), "rb").read()


def test_seed_changes_order_not_content(tmp_path, synthetic_ucf101, ucf101_shards):
    out, _ = ucf101_shards
    other = str(tmp_path / "seed1")
    convert_dataset("ucf101", synthetic_ucf101.root, other, workers=1, shard_size="24kB", seed=1, progress=False)
    a, b = read_manifest(out), read_manifest(other)
    assert sorted(a.column("sha256").to_pylist()) == sorted(b.column("sha256").to_pylist())
    assert a.column("key").to_pylist() != b.column("key").to_pylist()


def test_limit_and_splits(tmp_path):
    syn = make_kinetics(str(tmp_path / "src"), num_classes=2, per_class=3, quirks=False)
    out = str(tmp_path / "out")
    s = convert_dataset("k400", syn.root, out, workers=1, splits="train,test", limit=2, progress=False)
    m = read_manifest(out)
    assert sorted(set(m.column("split").to_pylist())) == ["test", "train"] and m.num_rows == 4 == s.samples


@pytest.mark.parametrize("codec", ["h264", "copy"])
def test_other_codecs(tmp_path, codec):
    syn = make_ssv2(str(tmp_path / "src"), num_classes=2, train=3, val=1, test=0, quirks=False)
    out = str(tmp_path / codec)
    convert_dataset("ssv2", syn.root, out, workers=1, codec=codec, progress=False)
    rows = check_store(out, syn, codec=codec)
    if codec == "copy":   # SSv2 is VP9 already: kept as it is, at its own 12 fps; DALI's CPU decoder reads it
        assert all(r["codec"] == "vp9" and r["fps"] == 12.0 and r["num_frames"] == 24 for r in rows.values())
        shards = sorted({r["shard"] for r in rows.values()})
        counts = dali_frame_counts([os.path.join(out, s) for s in shards],
                                   [os.path.join(out, s[:-4] + ".idx") for s in shards])
        assert {k: v[0] for k, v in counts.items()} == {k: 24 for k in rows}


def test_copy_falls_back_to_vp9_for_mpeg4(tmp_path):
    syn = make_ucf101(str(tmp_path / "src"), num_classes=2, groups=4, quirks=False)
    out = str(tmp_path / "out")
    convert_dataset("ucf101", syn.root, out, workers=1, codec="copy", progress=False)
    assert set(read_manifest(out).column("codec").to_pylist()) == {"vp9"}


def test_short_side_and_fps(tmp_path):
    syn = make_ucf101(str(tmp_path / "src"), num_classes=2, groups=4, quirks=False, width=96, height=72)
    out = str(tmp_path / "out")
    convert_dataset("ucf101", syn.root, out, workers=1, short_side=36, fps=15, keyframe_interval=4, progress=False)
    rows = check_store(out, syn, keyframe_interval=4, fps=15.0)
    assert {(r["width"], r["height"]) for r in rows.values()} == {(48, 36)}
    assert {r["num_frames"] for r in rows.values()} == {18}
    big = str(tmp_path / "big")   # never upscale
    convert_dataset("ucf101", syn.root, big, workers=1, short_side=256, progress=False)
    assert {(r["width"], r["height"]) for r in read_manifest(big).to_pylist()} == {(96, 72)}


def test_parts_then_merge(tmp_path, synthetic_ucf101, ucf101_shards):
    whole, _ = ucf101_shards
    out = str(tmp_path / "parts")
    kw = dict(workers=1, shard_size="24kB", progress=False)
    s1 = convert_dataset("ucf101", synthetic_ucf101.root, out, part="1/2", **kw)
    assert not s1.merged and not os.path.exists(os.path.join(out, "manifest.parquet"))
    with pytest.raises(RuntimeError, match=r"parts \[2\] of 2 have not finished"):
        merge(out)
    s2 = convert_dataset("ucf101", synthetic_ucf101.root, out, part="2/2", **kw)
    assert s2.merged
    m, ref = read_manifest(out), read_manifest(whole)
    assert 0 < s1.samples < ref.num_rows and s1.samples + s2.samples == ref.num_rows
    assert sorted(m.column("sha256").to_pylist()) == sorted(ref.column("sha256").to_pylist())
    assert read_rejects(out).num_rows == read_rejects(whole).num_rows
    numbers = sorted({int(s[4:10]) for s in m.column("shard").to_pylist()})
    p1 = {int(r["shard"][4:10]) % 2 for r in m.to_pylist() if r["key"] in set(
        pq.read_table(os.path.join(out, "_work", "all-000000.manifest.parquet")).column("key").to_pylist())}
    assert p1 == {0} and len(numbers) >= 2
    merged_again, _ = merge(out)
    assert merged_again.equals(m)


def test_other_settings_refuse_to_resume(tmp_path, synthetic_ucf101):
    out = str(tmp_path / "o")
    convert_dataset("ucf101", synthetic_ucf101.root, out, workers=1, progress=False, limit=3)
    with pytest.raises(RuntimeError, match="other settings"):
        convert_dataset("ucf101", synthetic_ucf101.root, out, workers=1, progress=False, codec="h264", limit=3)


def test_parsers():
    assert parse_size("512MB") == 512_000_000 and parse_size("64MiB") == 64 * 2 ** 20 and parse_size("30kB") == 30_000
    assert parse_part("3/8") == (3, 8) and parse_part(None) == (1, 1)
    with pytest.raises(ValueError, match="I/N"):
        parse_part("3-8")
    with pytest.raises(ValueError, match="1 <= I <= N"):
        parse_part("0/2")
    with pytest.raises(ValueError, match="size"):
        parse_size("lots")


def test_plain_tar_extracts(ucf101_shards, tmp_path):
    out, _ = ucf101_shards
    shard = sorted(f for f in os.listdir(out) if f.endswith(".tar"))[0]
    subprocess.run(["tar", "-xf", os.path.join(out, shard), "-C", str(tmp_path)], check=True)
    names = os.listdir(tmp_path)
    assert names and all(n.rsplit(".", 1)[1] in ("mp4", "json", "lbl", "nfr") for n in names)
    assert Store(out).list("") and all(os.path.getsize(tmp_path / n) > 0 for n in names)
