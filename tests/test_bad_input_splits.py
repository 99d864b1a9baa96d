"""A split set is one unit, split rows agree with the store, and paths stay inside their store: on a real shard
store (the session's converted UCF101-layout dataset) and split files written by tools/make_splits.py."""
from __future__ import annotations

import json
import posixpath
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import reader
from pipeline.samples import from_manifest, from_split
from shards.cli import describe, run
from shards.manifest import TableError, bad_store_path
from shards.splits import SET_FILE, Manifest, SplitError, check_split_set, read_split
from shards.storage import join
from shards.storage.lock import RunLock
from shards.verify import verify, verify_split
from tool_module import load_tool

make_splits = load_tool("make_splits")
verify_shards = load_tool("verify_shards")


def splits_of(store: str, out: Path, seed: int, capsys=None) -> Path:
    argv = ["--protocol", "base2novel", "--dataset", "ucf101", "--manifest", store, "--out", str(out),
            "--shots", "1", "--num-train-sets", "2", "--seed", str(seed)]
    assert run(make_splits.main, argv, prog="make_splits") == 0
    return out / "base2novel" / "ucf101"


@pytest.fixture(scope="module")
def two_runs(ucf101_shards, tmp_path_factory):
    """The same store's base-to-novel set from seed 0 and from seed 1 (whose base classes differ)."""
    store, _ = ucf101_shards
    root = tmp_path_factory.mktemp("two_runs")
    return store, splits_of(store, root / "seed0", 0), splits_of(store, root / "seed1", 1)


def copy_set(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def rewrite(url: Path, change, drop_set: bool = True, to: Path | None = None) -> Path:
    """The split file `url` with its table changed by `change` (a function of the table), written as a hand-made
    split (no set metadata) beside a copy of its classes file in `to` (default: in place)."""
    table = pq.read_table(url)
    meta = dict(table.schema.metadata)
    if drop_set:
        meta.pop(b"split_set", None)
    table = change(table).replace_schema_metadata(meta)
    dest = (to or url.parent) / url.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if to is not None:
        classes = meta[b"classes_file"].decode()
        shutil.copy(url.parent / classes, to / classes)
    pq.write_table(table, dest)
    return dest


def set_column(table: pa.Table, name: str, row: int, value) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    return table.set_column(table.column_names.index(name), name, pa.array(values, table.schema.field(name).type))


def message(exc) -> str:
    text = describe(exc)
    assert text is not None, f"would be a traceback: {exc!r}"
    return text


# ------------------------------------------------------------------------------------------ a set is one unit

def test_a_second_make_splits_on_the_same_out_is_locked_out(ucf101_shards, tmp_path, capsys):
    out = tmp_path / "out"
    with RunLock(join(str(out), make_splits.LOCK), what=str(out)):
        status = run(make_splits.main, ["--protocol", "base2novel", "--dataset", "ucf101", "--manifest",
                                        ucf101_shards[0], "--out", str(out), "--shots", "1"], prog="make_splits")
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "in use by another run" in err and str(out) in err
    assert not (out / "base2novel").exists()


def test_a_rerun_with_another_seed_that_stops_part_way_leaves_no_usable_set(two_runs, tmp_path, capsys):
    store, seed0, _ = two_runs
    out = tmp_path / "out"
    folder = copy_set(seed0, out / "base2novel" / "ucf101")
    (folder / "eval_base.parquet").unlink()
    (folder / "eval_base.parquet").mkdir()             # the rerun's write of eval_base fails: a real OS error
    argv = ["--protocol", "base2novel", "--dataset", "ucf101", "--manifest", store, "--out", str(out),
            "--shots", "1", "--num-train-sets", "2", "--seed", "1"]
    assert run(make_splits.main, argv, prog="make_splits") == 2
    assert "eval_base.parquet" in capsys.readouterr().err
    assert json.loads((folder / SET_FILE).read_text())["state"] == "writing"
    for name in ("train_s1", "eval_novel"):               # one from the new run, one left by the old
        url = str(folder / f"{name}.parquet")
        for reads in (check_split_set, read_split, from_split):
            with pytest.raises(SplitError) as e:
                reads(url)
            assert "unfinished" in message(e.value) and url in message(e.value)


def test_a_set_with_files_of_another_run_is_refused_naming_them(two_runs, tmp_path):
    _, seed0, seed1 = two_runs
    folder = copy_set(seed0, tmp_path / "mixed")
    for name in ("eval_novel.parquet", "classes_novel.parquet"):
        shutil.copy(seed1 / name, folder / name)
    with pytest.raises(SplitError) as e:
        check_split_set(str(folder / "train_s1.parquet"))
    text = message(e.value)
    assert "eval_novel.parquet" in text and "classes_novel.parquet" in text and "train_s1" not in text
    with pytest.raises(SplitError):
        read_split(str(folder / "eval_novel.parquet"))
    read_split(str(folder / "train_s1.parquet"))           # the pair itself is whole; training refuses the set:
    from model.data import build_loader
    with pytest.raises(SplitError, match="eval_novel.parquet"):
        build_loader(str(folder / "train_s1.parquet"), None, None, train=True, batch_size=1)


def test_a_split_file_left_from_another_run_is_not_part_of_the_set(two_runs, tmp_path):
    _, seed0, seed1 = two_runs
    folder = copy_set(seed0, tmp_path / "left")
    shutil.copy(seed1 / "train_s1.parquet", folder / "train_s3.parquet")
    with pytest.raises(SplitError) as e:
        read_split(str(folder / "train_s3.parquet"))
    assert "is not part of the split set" in message(e.value)
    (folder / SET_FILE).write_text("{broken")
    with pytest.raises(SplitError, match=f"{SET_FILE}: damaged"):
        read_split(str(folder / "train_s1.parquet"))


def test_a_whole_set_reads_and_verifies_clean(two_runs, capsys):
    _, seed0, _ = two_runs
    for f in sorted(seed0.glob("[te]*.parquet")):
        assert check_split_set(str(f))["run"]
        assert verify_split(str(f)).ok
    assert run(verify_shards.main, ["--split", str(seed0 / "train_s1.parquet")], prog="verify_shards") == 0
    assert "verdict    clean" in capsys.readouterr().out


# ----------------------------------------------------------------------------------- split rows vs the store

def _first_fragmented(table: pa.Table) -> int:
    return next(i for i, f in enumerate(table.column("fragment_frames").to_pylist()) if f and len(f) > 1)


@pytest.mark.parametrize("column", ["fragment_frames", "fragment_offsets", "num_frames"])
def test_a_split_row_that_disagrees_with_the_stored_stream_is_an_error_naming_it(two_runs, tmp_path, capsys,
                                                                                 column):
    _, seed0, _ = two_runs
    source = seed0 / "eval_base.parquet"
    table = pq.read_table(source)
    row = _first_fragmented(table)
    key = table.column("key")[row].as_py()
    value = table.column(column)[row].as_py()
    if column == "num_frames":
        changed = value + 4
    else:                                   # still a valid (increasing) table, but not the stream's
        changed = [value[0]] + [v + 1 for v in value[1:]]
    split = rewrite(source, lambda t: set_column(t, column, row, changed), to=tmp_path / "tampered")

    samples = from_split(str(split))
    files = reader.ShardFiles(samples.shards)
    try:
        i = samples.keys.index(key)
        span = files.read(int(samples.shard[i]), int(samples.offset[i]), int(samples.offset[i] + samples.size[i]))
        with pytest.raises(reader.ShardDataError) as e:
            reader.check(span, samples, i, samples.shards)
        assert key in message(e.value) and ("fragment table" in str(e.value) or "num_frames" in str(e.value))
        for j in range(len(samples)):       # every other row agrees with its stream
            if j != i:
                reader.check(files.read(int(samples.shard[j]), int(samples.offset[j]),
                                        int(samples.offset[j] + samples.size[j])), samples, j, samples.shards)
    finally:
        files.close()
    report = verify_split(str(split))
    assert [p.key for p in report.problems] == [key]
    assert run(verify_shards.main, ["--split", str(split)], prog="verify_shards") == 1
    assert key in capsys.readouterr().out


def test_a_split_row_whose_shard_lies_outside_its_store_names_the_row(two_runs, tmp_path):
    _, seed0, _ = two_runs
    source = seed0 / "eval_base.parquet"
    for shard, why in (("/etc/passwd", "outside the store"), ("relative.tar", "outside the store")):
        split = rewrite(source, lambda t: set_column(t, "shard", 1, shard), to=tmp_path / why.replace(" ", "_"))
        with pytest.raises(SplitError) as e:
            read_split(str(split))
        assert "row 1" in message(e.value) and repr(shard) in message(e.value) and why in message(e.value)


def test_an_empty_split_file_and_an_empty_planned_split_are_clear_errors(ucf101_shards, two_runs, tmp_path, capsys):
    _, seed0, _ = two_runs
    split = rewrite(seed0 / "eval_base.parquet", lambda t: t.slice(0, 0), to=tmp_path / "empty")
    with pytest.raises(SplitError, match="split has no rows"):
        from_split(str(split))
    store = Path(ucf101_shards[0])
    copy = tmp_path / "store"
    copy.mkdir()
    shutil.copy(store / "classes.parquet", copy / "classes.parquet")
    manifest = pq.read_table(store / "manifest.parquet")
    column = manifest.column_names.index("split1")
    pq.write_table(manifest.set_column(column, "split1", pa.array(["train"] * manifest.num_rows)),
                   copy / "manifest.parquet")   # no official test videos: nothing to evaluate on
    assert run(make_splits.main, ["--protocol", "base2novel", "--dataset", "ucf101", "--manifest", str(copy),
                                  "--out", str(tmp_path / "out"), "--shots", "1"], prog="make_splits") == 2
    assert "eval_base: no samples" in capsys.readouterr().err


# ------------------------------------------------------------------------------- manifests and their paths

def store_copy(store: str, to: Path, change) -> str:
    to.mkdir()
    shutil.copy(Path(store) / "classes.parquet", to / "classes.parquet")
    pq.write_table(change(pq.read_table(Path(store) / "manifest.parquet")), to / "manifest.parquet")
    return str(to)


@pytest.mark.parametrize("shard", ["../../../../etc/passwd", "/etc/passwd", "s3://elsewhere/x.tar", None])
def test_a_manifest_shard_outside_the_store_is_an_error_naming_the_row(ucf101_shards, tmp_path, capsys, shard):
    table = pq.read_table(Path(ucf101_shards[0]) / "manifest.parquet")
    key = table.column("key")[2].as_py()
    store = store_copy(ucf101_shards[0], tmp_path / "s", lambda t: set_column(t, "shard", 2, shard))
    for reads in (verify, from_manifest, Manifest.load):
        with pytest.raises(TableError) as e:
            reads(store)
        assert "row 2" in message(e.value) and key in message(e.value)
    assert run(verify_shards.main, [store], prog="verify_shards") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "row 2" in err


@pytest.mark.parametrize("column", ["shard", "offset", "sha256", "label"])
def test_a_manifest_missing_a_column_names_it(ucf101_shards, tmp_path, column):
    store = store_copy(ucf101_shards[0], tmp_path / "s", lambda t: t.drop_columns([column]))
    for reads in (verify, from_manifest, Manifest.load):
        if reads is not verify and column == "sha256":
            continue        # only verify reads the checksum
        with pytest.raises((TableError, SplitError)) as e:
            reads(store)
        assert column in message(e.value) and "manifest.parquet" in message(e.value)


@pytest.mark.parametrize("column, values", [("label", "text"), ("offset", 1.5), ("key", 7)])
def test_a_manifest_column_of_the_wrong_kind_names_it(ucf101_shards, tmp_path, column, values):
    def change(t: pa.Table) -> pa.Table:
        new = pa.array([values if values != "text" else str(v) for v in t.column(column).to_pylist()])
        return t.set_column(t.column_names.index(column), column, new)
    store = store_copy(ucf101_shards[0], tmp_path / "s", change)
    for reads in (verify, from_manifest, Manifest.load):
        with pytest.raises(TableError) as e:
            reads(store)
        assert f"column {column} holds" in message(e.value) and "manifest.parquet" in message(e.value)


@settings(max_examples=300, deadline=None)
@given(rel=st.one_of(st.text(max_size=30), st.lists(st.sampled_from(["..", ".", "", "a", "b.tar", "/", "\\", "s3:"]),
                                                   max_size=5).map("/".join)))
def test_a_shard_path_that_passes_stays_inside_its_store(rel):
    if bad_store_path(rel) is None:
        assert posixpath.normpath(posixpath.join("/store", rel)).startswith("/store/")
        assert "://" not in rel and not rel.startswith("/")


def test_verify_shards_with_a_store_and_a_split_of_another_store_reports_every_shard(two_runs, tmp_path, capsys):
    store, seed0, _ = two_runs
    other = tmp_path / "other"
    other.mkdir()
    assert run(verify_shards.main, [store, "--split", str(seed0 / "eval_base.parquet")], prog="verify_shards") == 0
    capsys.readouterr()
    assert run(verify_shards.main, [str(other), "--split", str(seed0 / "eval_base.parquet")],
               prog="verify_shards") == 2                    # no manifest in `other`: the store itself is unreadable
    report = verify_split(str(seed0 / "eval_base.parquet"), str(other))
    assert report.problems and all(p.kind == "outside the store" for p in report.problems)
