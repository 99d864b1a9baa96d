"""Damaged annotations of every dataset layout end in a correct result or one `LayoutError` naming the file, line
(or entry) and value; never another exception. Layouts are written by hand, annotations only (no videos: a video
the annotation names but the folder lacks is a counted `missing` reject, which these tests do not need)."""
from __future__ import annotations

import codecs
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shards.cli import describe, run
from shards.records import LayoutError
from shards.sources import load
from tool_module import load_tool

HEADER = "label,youtube_id,time_start,time_end,split"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def kinetics(root, train: str | bytes, val: str | bytes | None = None):
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for name, text in (("train.csv", train), ("val.csv", val)):
        if text is not None:
            with open(os.path.join(root, "annotations", name), "wb") as f:
                f.write(text if isinstance(text, bytes) else text.encode())
    return str(root)


def ucf101(root, train1: str | bytes = "Archery/v_Archery_g01_c01.avi 1\n", class_ind: str | bytes = "1 Archery\n"):
    lists = os.path.join(root, "ucfTrainTestlist")
    os.makedirs(lists, exist_ok=True)
    os.makedirs(os.path.join(root, "UCF-101", "Archery"), exist_ok=True)
    files = {"classInd.txt": class_ind, "trainlist01.txt": train1}
    for k in (1, 2, 3):
        files.setdefault(f"trainlist0{k}.txt", "Archery/v_Archery_g01_c01.avi 1\n")
        files.setdefault(f"testlist0{k}.txt", "Archery/v_Archery_g02_c01.avi\n")
    for name, text in files.items():
        with open(os.path.join(lists, name), "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
    return str(root)


def hmdb51(root, split1: str | bytes):
    lists = os.path.join(root, "testTrainMulti_7030_splits")
    os.makedirs(lists, exist_ok=True)
    os.makedirs(os.path.join(root, "jump"), exist_ok=True)
    for k in (1, 2, 3):
        text = split1 if k == 1 else "a.avi 1 \n"
        with open(os.path.join(lists, f"jump_test_split{k}.txt"), "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
    return str(root)


def ssv2(root, train, labels=None, raw_labels: bytes | None = None):
    os.makedirs(os.path.join(root, "20bn-something-something-v2"), exist_ok=True)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    with open(os.path.join(root, "labels", "labels.json"), "wb") as f:
        f.write(raw_labels if raw_labels is not None else json.dumps(labels or {"Pushing something": "0"}).encode())
    for name, entries in (("train.json", train), ("validation.json", [])):
        with open(os.path.join(root, "labels", name), "wb") as f:
            f.write(entries if isinstance(entries, bytes) else json.dumps(entries).encode())
    return str(root)


def one_line(exc: BaseException, *needles: str) -> str:
    """The guard's message for `exc` (what the user sees after `prog: error:`), holding every needle."""
    message = describe(exc)
    assert message is not None, f"{type(exc).__name__} would be a traceback: {exc}"
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# ------------------------------------------------------------------------------------------- Kinetics CSVs

def test_a_kinetics_csv_with_a_byte_order_mark_is_labelled_as_without(tmp_path):
    rows = f"{HEADER}\nabseiling,aaaaaaaaaaa,10,20,train\nbowling,bbbbbbbbbbb,0,10,train\n"
    plain = load("k400", kinetics(tmp_path / "plain", rows))
    marked = load("k400", kinetics(tmp_path / "bom", codecs.BOM_UTF8 + rows.encode()))
    assert marked.classes == plain.classes == ["abseiling", "bowling"]
    assert [(r.key, r.label, r.class_name) for r in marked.records] == [
        (r.key, r.label, r.class_name) for r in plain.records]
    assert all(r.label >= 0 for r in marked.records)


def test_a_kinetics_training_csv_without_its_label_column_is_refused(tmp_path):
    root = kinetics(tmp_path, "youtube_id,time_start,time_end,split\naaaaaaaaaaa,10,20,train\n")
    with pytest.raises(LayoutError) as e:
        load("k400", root)
    one_line(e.value, "train.csv:1", "lacks column(s) label")


def test_a_kinetics_training_row_without_a_label_is_refused(tmp_path):
    root = kinetics(tmp_path, f"{HEADER}\nabseiling,aaaaaaaaaaa,10,20,train\n,bbbbbbbbbbb,0,10,train\n")
    with pytest.raises(LayoutError) as e:
        load("k400", root)
    one_line(e.value, "train.csv:3", "empty label")


def test_a_k600_test_list_without_labels_stays_unlabelled(tmp_path):
    root = kinetics(tmp_path, f"{HEADER}\nabseiling,aaaaaaaaaaa,10,20,train\n")
    with open(os.path.join(root, "annotations", "test.csv"), "w") as f:
        f.write("youtube_id,time_start,time_end,split\nccccccccccc,0,10,test\n")
    index = load("k600", root)
    assert {r.split: r.label for r in index.records} == {"train": 0, "test": -1}


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "-5", "12.5", "1000000", "ten"])
def test_a_kinetics_time_that_is_no_whole_number_of_seconds_names_its_row(tmp_path, value):
    root = kinetics(tmp_path, f"{HEADER}\nabseiling,aaaaaaaaaaa,{value},20,train\n")
    with pytest.raises(LayoutError) as e:
        load("k400", root)
    one_line(e.value, "train.csv:2", "time_start", repr(value))


def test_a_kinetics_time_end_before_its_start_names_its_row(tmp_path):
    with pytest.raises(LayoutError) as e:
        load("k400", kinetics(tmp_path, f"{HEADER}\nabseiling,aaaaaaaaaaa,20,10,train\n"))
    one_line(e.value, "train.csv:2", "time_end 10 is before time_start 20")


def test_a_latin1_byte_in_a_kinetics_csv_names_line_and_column(tmp_path):
    root = kinetics(tmp_path, f"{HEADER}\nabseiling,aaaaaaaaaaa,10,20,train\n".encode()
                    + b"caf\xe9,bbbbbbbbbbb,0,10,train\n")
    with pytest.raises(LayoutError) as e:
        load("k400", root)
    one_line(e.value, "train.csv:3:4", "0xe9 is not UTF-8")


def test_a_kinetics_csv_with_a_nul_byte_or_a_repeated_column_is_refused(tmp_path):
    with pytest.raises(LayoutError) as e:
        load("k400", kinetics(tmp_path / "nul", f"{HEADER}\nabseiling,aa\0a,10,20,train\n"))
    one_line(e.value, "train.csv:2:13", "NUL")
    with pytest.raises(LayoutError) as e:
        load("k400", kinetics(tmp_path / "twice", f"{HEADER},label\nabseiling,aaaaaaaaaaa,10,20,train,x\n"))
    one_line(e.value, "train.csv:1", "label twice")


def test_a_youtube_id_with_a_path_separator_is_refused(tmp_path):
    with pytest.raises(LayoutError) as e:
        load("k400", kinetics(tmp_path, f"{HEADER}\nabseiling,../../etc/x,10,20,train\n"))
    one_line(e.value, "train.csv:2", "path separator")


# --------------------------------------------------------------------------------------------- UCF101, HMDB51

def test_a_utf16_class_list_reads_as_its_utf8_twin(tmp_path):
    plain = load("ucf101", ucf101(tmp_path / "plain"))
    wide = load("ucf101", ucf101(tmp_path / "wide", class_ind="1 Archery\r\n".encode("utf-16")))
    assert wide.classes == plain.classes == ["Archery"]
    assert [r.key for r in wide.records] == [r.key for r in plain.records]


def test_a_latin1_byte_in_a_ucf_list_names_line_and_column(tmp_path):
    root = ucf101(tmp_path, train1=b"Archery/v_Archery_g01_c01.avi 1\nArchery/v_Arch\xe9ry_g02_c01.avi 1\n")
    with pytest.raises(LayoutError) as e:
        load("ucf101", root)
    one_line(e.value, "trainlist01.txt:2:15", "0xe9")


@pytest.mark.parametrize("line", ["Archery/../../../outside/x.avi 1", "Archery//x.avi 1", "/etc/passwd 1",
                                  "Archery/./x.avi 1"])
def test_a_ucf_path_outside_root_names_its_row(tmp_path, line):
    with pytest.raises(LayoutError) as e:
        load("ucf101", ucf101(tmp_path, train1=line + "\n"))
    one_line(e.value, "trainlist01.txt:1", "leaves --root")


def test_a_ucf_class_id_in_another_script_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(LayoutError) as e:
        load("ucf101", ucf101(tmp_path, class_ind="\u00b2 Archery\n"))
    one_line(e.value, "classInd.txt:1", "expected '<id> <ClassName>'")


@pytest.mark.parametrize("name", ["../x.avi", "sub/x.avi", ".."])
def test_an_hmdb_name_outside_its_class_folder_names_its_row(tmp_path, name):
    with pytest.raises(LayoutError) as e:
        load("hmdb51", hmdb51(tmp_path, f"a.avi 1 \n{name} 2 \n"))
    one_line(e.value, "jump_test_split1.txt:2", repr(name))


def test_a_non_utf8_hmdb_file_name_names_line_and_column(tmp_path):
    with pytest.raises(LayoutError) as e:
        load("hmdb51", hmdb51(tmp_path, b"a.avi 1 \ncaf\xe9.avi 2 \n"))
    one_line(e.value, "jump_test_split1.txt:2:4", "not UTF-8")


# ----------------------------------------------------------------------------------------------------- SSv2

def entry(vid="1", template="Pushing [something]", placeholders=("a cup",)):
    return {"id": vid, "label": "pushing a cup", "template": template, "placeholders": list(placeholders)}


def test_ssv2_null_placeholders_are_none_and_a_null_placeholder_is_refused(tmp_path):
    e = entry()
    e["placeholders"] = None
    index = load("ssv2", ssv2(tmp_path / "a", [e]))
    assert index.records[0].extras["placeholders"] == [] and index.records[0].label == 0
    with pytest.raises(LayoutError) as err:
        load("ssv2", ssv2(tmp_path / "b", [entry(), entry("2", placeholders=["a cup", None])]))
    one_line(err.value, "train.json entry 1 (id 2)", "each placeholder must be a string, got null")


@pytest.mark.parametrize("bad, needle", [
    ({"template": None}, "no 'template'"), ({"template": 7}, "'template' must be a string"),
    ({"id": None}, "'id' must be a string or integer"), ({"id": "../x"}, "is not a file name"),
    ({"id": "\udcff"}, "not valid Unicode"), ({"placeholders": "cup"}, "must be a list of strings")])
def test_a_damaged_ssv2_entry_names_the_entry(tmp_path, bad, needle):
    with pytest.raises(LayoutError) as e:
        load("ssv2", ssv2(tmp_path, [entry(), {**entry("2"), **bad}]))
    one_line(e.value, "train.json entry 1", needle)


def test_a_utf16_ssv2_labels_file_reads_as_its_utf8_twin(tmp_path):
    labels = {"Pushing something": "0"}
    wide = load("ssv2", ssv2(tmp_path / "wide", [entry()], raw_labels=json.dumps(labels).encode("utf-16")))
    plain = load("ssv2", ssv2(tmp_path / "plain", [entry()], labels=labels))
    assert wide.classes == plain.classes == ["Pushing something"]
    assert wide.records[0].label == plain.records[0].label == 0


@pytest.mark.parametrize("raw, needle", [
    (b'{"Pushing something": "0"', "not valid JSON"), (b"\xff\xfe\x00", "not"),
    (b'{"a": "x"}', "id must be an integer"), (b'{"a": true}', "id must be an integer"),
    (b'{"a": 1}', "0..0 without gaps"), (b'[1]', "expected an object")])
def test_a_damaged_ssv2_labels_file_names_it(tmp_path, raw, needle):
    with pytest.raises(LayoutError) as e:
        load("ssv2", ssv2(tmp_path, [entry()], raw_labels=raw))
    one_line(e.value, "labels.json", needle)


# --------------------------------------------------------------------------------- the command, end to end

def test_make_shards_says_one_line_with_status_2_for_a_damaged_annotation(tmp_path, capsys):
    make_shards = load_tool("make_shards")
    root = kinetics(tmp_path / "k400", "youtube_id,time_start,time_end,split\naaaaaaaaaaa,inf,20,train\n")
    status = run(make_shards.main, ["--dataset", "k400", "--root", root, "--out", str(tmp_path / "out")],
                 prog="make_shards")
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and err.startswith("make_shards: error: ")
    assert "train.csv:1" in err and "label" in err


# ---------------------------------------------------------------------------------- property-based: parsers

text_bytes = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                       st.text(max_size=200).map(lambda t: t.encode("utf-16", "surrogatepass")))
csv_cell = st.sampled_from(["abseiling", "", "inf", "nan", "-1", "10", "1e9", "12.5", "a,b", '"q"', "\ufeff",
                            "../x", "caf\u00e9", "\x00", " "])
csv_rows = st.lists(st.lists(csv_cell, min_size=0, max_size=6).map(",".join), max_size=5)


def _load_or_layout_error(dataset: str, root: str) -> None:
    try:
        index = load(dataset, root)
    except LayoutError as e:
        one_line(e)
        return
    for r in index.records:   # a result: every record's text is storable and its path inside --root
        r.key.encode("utf-8")
        r.source_path.encode("utf-8")
        assert r.path is None or os.path.normpath(r.path).startswith(os.path.abspath(root) + os.sep)


@FAST
@given(header=st.sampled_from([HEADER, "\ufeff" + HEADER, "youtube_id,time_start,time_end", "label,youtube_id"]),
       rows=csv_rows, raw=text_bytes)
def test_any_kinetics_csv_gives_records_or_a_layout_error(header, rows, raw):
    with tempfile.TemporaryDirectory() as d:
        _load_or_layout_error("k400", kinetics(d, "\n".join([header, *rows]) + "\n", val=raw))


@FAST
@given(class_ind=text_bytes, train=st.lists(st.sampled_from(
    ["Archery/v_Archery_g01_c01.avi 1", "Archery/v_x.avi", "archery/../x.avi", "Archery/x.avi \u00b2", "x",
     "Other/x.avi 2", "Archery/x.avi 1 2", "\\x/y 1", "Archery/caf\u00e9.avi"]), max_size=4), raw=text_bytes)
def test_any_ucf_list_gives_records_or_a_layout_error(class_ind, train, raw):
    with tempfile.TemporaryDirectory() as d:
        root = ucf101(d, train1="\n".join(train), class_ind=class_ind)
        _load_or_layout_error("ucf101", root)
        ucf101(d, train1=raw)
        _load_or_layout_error("ucf101", root)


@FAST
@given(raw=text_bytes, lines=st.lists(st.sampled_from(["a.avi 1", "b#&(1).avi 2 ", "x 3", "../a.avi 1", "a.avi",
                                                        "c.avi 0", "d e.avi 1", ""]), max_size=5))
def test_any_hmdb_list_gives_records_or_a_layout_error(raw, lines):
    with tempfile.TemporaryDirectory() as d:
        _load_or_layout_error("hmdb51", hmdb51(d, "\n".join(lines)))
        _load_or_layout_error("hmdb51", hmdb51(d, raw))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                                      max_size=3), max_leaves=10)
ssv2_entries = st.lists(st.one_of(json_values, st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=8), st.integers(), st.none())},
    optional={"template": st.one_of(st.sampled_from(["Pushing [something]", "pushing something", "Other"]),
                                     json_values),
              "placeholders": json_values})), max_size=4)


@FAST
@given(labels=json_values, entries=ssv2_entries, raw=text_bytes)
def test_any_ssv2_label_files_give_records_or_a_layout_error(labels, entries, raw):
    with tempfile.TemporaryDirectory() as d:
        _load_or_layout_error("ssv2", ssv2(d, entries))
        _load_or_layout_error("ssv2", ssv2(d, entries, raw_labels=json.dumps(labels).encode()))
        _load_or_layout_error("ssv2", ssv2(d, raw))


# ------------------------------------------------------------- property-based: published split and class files

id_lines = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(
    ["0,abseiling", "1,bowling", "id,name", "\u00b2,x", "-1,y", "99999999999999999999999,z", "2,\"q, r\"", "# c"])),
    max_size=6).map("\n".join)


@FAST
@given(text=id_lines, prompts=st.one_of(st.text(max_size=40), json_values.map(json.dumps)))
def test_any_published_list_or_class_file_gives_a_result_or_a_split_error(text, prompts):
    from shards.protocols.names import SplitError, load_prompts, parse_label_list, parse_name_list
    from shards.protocols.published import parse_list
    classes = [(0, "abseiling"), (1, "bowling")]
    for parse in (lambda: parse_list(text, "list.txt"), lambda: parse_label_list(text, "labels.csv"),
                  lambda: parse_name_list(text, "names.txt"), lambda: load_prompts(text, "c.json", classes),
                  lambda: load_prompts(prompts, "c.json", classes)):
        try:
            parse()
        except SplitError as e:
            one_line(e)


def test_a_published_file_with_a_latin1_byte_names_line_and_column(tmp_path):
    from shards.protocols.published import read_text
    path = tmp_path / "train.txt"
    path.write_bytes(b"a.avi 1\nb\xe9.avi 2\n")
    with pytest.raises(LayoutError) as e:
        read_text(str(path))
    one_line(e.value, "train.txt:2:2", "0xe9")


def test_a_class_folder_whose_name_is_not_utf8_is_named_with_its_bytes(tmp_path):
    root = os.fsencode(str(tmp_path))
    lists = os.path.join(root, b"testTrainMulti_7030_splits")
    os.makedirs(lists)
    os.makedirs(os.path.join(root, b"caf\xe9"))
    for k in (1, 2, 3):
        with open(os.path.join(lists, b"caf\xe9_test_split%d.txt" % k), "w") as f:
            f.write("a.avi 1\n")
    with pytest.raises(LayoutError) as e:
        load("hmdb51", str(tmp_path))
    one_line(e.value, "caf\\xe9/a.avi", "the class name 'caf\\xe9' is not valid UTF-8")
