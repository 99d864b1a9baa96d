"""Bad training/evaluation settings end in one ConfigError line naming the key and the value (exit status 2),
never in a run that trains on them; any YAML document or override gives a config or a ConfigError."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from model.config import RANGES, Config, ConfigError, load_config
from shards.cli import run

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("override,message", [
    # the issue's examples
    ("data.frame_stride=-3", "data.frame_stride=-3: must be at least 1"),
    ("train.log_every=0", "train.log_every=0: must be at least 1"),
    ("train.betas=[2,3]", "train.betas=(2.0, 3.0): must be less than 1"),
    ("train.lr=nan", "train.lr=nan: must be a finite number"),
    ("data.num_threads=0", "data.num_threads=0: must be at least 1"),
    # the same kinds elsewhere
    ("train.lr=.inf", "train.lr=inf: must be a finite number"),
    ("train.lr=1e400", "train.lr=inf: must be a finite number"),
    ("train.lr=-1e-5", "train.lr=-1e-05: must be greater than 0"),
    ("train.lr=0", "train.lr=0.0: must be greater than 0"),
    ("train.min_lr=1", "train.min_lr=1: must be at most train.lr"),
    ("train.eps=0", "train.eps=0.0: must be greater than 0"),
    ("train.betas=[0.9, -0.1]", "train.betas=(0.9, -0.1): must be at least 0"),
    ("train.weight_decay=-0.01", "train.weight_decay=-0.01: must be at least 0"),
    ("train.clip_grad=-1", "train.clip_grad=-1.0: must be at least 0"),
    ("train.seed=-1", "train.seed=-1: must be at least 0"),
    ("train.seed=4294967296", "train.seed=4294967296: must be at most 4294967295"),
    ("train.keep_states=-2", "train.keep_states=-2: must be at least 0"),
    ("train.save_every_steps=-5", "train.save_every_steps=-5: must be at least 0"),
    ("train.micro_batch=128", "train.micro_batch=128: must be at most train.global_batch=64"),
    ("train.epochs=10000000", "train.epochs=10000000: must be at most 1000000"),
    ("data.prefetch=0", "data.prefetch=0: must be at least 1"),
    ("data.num_frames=0", "data.num_frames=0: must be at least 1"),
    ("data.num_views=-1", "data.num_views=-1: must be at least 1"),
    ("data.crop_size=0", "data.crop_size=0: must be at least 1"),
    ("data.train_set=0", "data.train_set=0: must be at least 1"),
    ("data.read_chunk_mb=0", "data.read_chunk_mb=0: must be at least 1"),
    ("data.short_side_range=[256, 224]", "data.short_side_range=[256, 224]: must satisfy data.crop_size"),
    ("data.short_side_range=[200, 256]", "data.short_side_range=[200, 256]: must satisfy data.crop_size (224)"),
    ("data.dataset=''", "data.dataset='': must not be empty"),
    ("model.alpha=.nan", "model.alpha=nan: must be a finite number"),
    ("model.alpha=-0.1", "model.alpha=-0.1: must be at least 0"),
    ("model.distill_weight=-2", "model.distill_weight=-2.0: must be at least 0"),
    ("model.clip=''", "model.clip='': must not be empty"),
    ("model.pretrained=' '", "model.pretrained=' ': must not be empty"),
    ("eval.weights=''", "eval.weights='': must not be empty"),
    ("eval.batch_size=0", "eval.batch_size=0: must be at least 1"),
    ("eval.max_missing=.nan", "eval.max_missing=nan: must be a finite number"),
    ("eval.max_missing=2.5", "eval.max_missing=2.5: must be a count >= 0 or a fraction in [0, 1)"),
    ("train.mixed_precision=no", "train.mixed_precision: expected a string, got False (YAML reads no/yes"),
    ("train.seed=2020-13-45", "not a YAML value: month must be in 1..12"),
    ("train.epochs=[1, 2]", "train.epochs: expected an integer, got [1, 2]"),
])
def test_a_bad_value_is_a_config_error_naming_key_and_value(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert message in str(e.value)


@pytest.mark.parametrize("overrides,message", [
    (["data.dataset=k400", "data.eval_datasets=[]"], "data.eval_datasets=[]: name at least one"),
    (["data.dataset=k400", "data.eval_datasets=[ucf101, ucf101]"], "a dataset is named twice"),
    (["data.dataset=k400", "data.eval_datasets=[ucf101, ../../etc]"],
     "data.eval_datasets: '../../etc' is not a dataset name"),
    (["data.dataset=../k400"], "data.dataset: '../k400' is not a dataset name"),
])
def test_dataset_names_are_plain_folder_names(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.protocol=cross", *overrides])
    assert message in str(e.value)


def test_a_dataset_of_ones_own_in_the_split_layout_is_accepted():
    cfg = load_config(None, ["data.protocol=cross", "data.dataset=my-k400", "data.eval_datasets=[ucf101, mine_2]"])
    assert cfg.data.eval_datasets == ["ucf101", "mine_2"]


def test_good_values_at_the_edges_of_their_ranges_are_kept():
    cfg = load_config(None, ["train.clip_grad=0", "train.keep_states=0", "train.betas=[0, 0.999]", "train.seed=0",
                             "train.min_lr=0", "model.alpha=0", "eval.max_missing=0.5", "eval.max_missing=3.0",
                             "train.warmup_epochs=0", "data.short_side_range=[224, 224]", "train.lr=1e-5"])
    assert cfg.train.betas == (0.0, 0.999) and cfg.eval.max_missing == 3.0 and cfg.train.lr == 1e-5


def _numeric(tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple) or origin is not None:
        return any(_numeric(a) for a in args if a is not type(None))
    return tp in (int, float)


def test_every_numeric_setting_has_a_range():
    """A new numeric field without a range would slip through as -3 did: the schema and RANGES stay in step."""
    keys = []
    for section in dataclasses.fields(Config):
        tp = typing.get_type_hints(Config)[section.name]
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            keys += [f"{section.name}.{f.name}" for f in dataclasses.fields(tp) if _numeric(hints[f.name])]
    assert keys and sorted(set(keys) - set(RANGES)) == []
    assert sorted(set(RANGES) - set(keys)) == []   # and no range names a key that does not exist


@pytest.mark.parametrize("content,message", [
    (b"\x80\x81train: {}\n", "not valid YAML"),                 # not UTF-8
    (b"- 1\n- 2\n", "top level must be a mapping"),
    (b"train: [1, 2]\n", "train: expected a mapping"),
    (b"train: {epochs: 3\n", "not valid YAML: line"),
    (b"1: 2\nnull: 3\n", "unknown key 1"),                      # keys YAML reads as numbers and null
    (b"train: {seed: 2020-13-45}\n", "not valid YAML: month must be in 1..12"),
    (b"train: {lr: !!binary AAAA}\n", "train.lr: expected a number"),
])
def test_a_damaged_config_file_is_named(tmp_path, content, message):
    f = tmp_path / "c.yaml"
    f.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(f) in str(e.value) and message in str(e.value)


def test_a_config_saved_as_utf16_or_with_a_byte_order_mark_is_read(tmp_path):
    for encoding in ("utf-16", "utf-8-sig"):
        f = tmp_path / f"{encoding}.yaml"
        f.write_bytes("train: {epochs: 5}\nmodel: {clip: frostline-tiny}\n".encode(encoding))
        cfg = load_config(f)
        assert cfg.train.epochs == 5 and cfg.model.clip == "frostline-tiny"


def test_train_entry_point_prints_one_line_and_exits_2(tmp_path):
    """The real command, as a user types it: one line on stderr naming the key and the value, exit 2."""
    f = tmp_path / "c.yaml"
    f.write_text(f"output_dir: {tmp_path / 'run'}\n")
    r = subprocess.run([sys.executable, "model/train.py", "--config", str(f), "data.frame_stride=-3"], cwd=REPO,
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.strip().splitlines() == [f"train: error: {f}: data.frame_stride=-3: must be at least 1"]
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.parametrize("override", ["train.log_every=0", "train.betas=[2,3]", "train.lr=nan",
                                      "data.num_threads=0"])
def test_train_and_evaluate_refuse_the_issues_values_in_process(tmp_path, capsys, override):
    from model import evaluate, train
    f = tmp_path / "c.yaml"
    f.write_text(f"output_dir: {tmp_path / 'run'}\n")
    for main, prog in ((train.main, "train"), (evaluate.main, "evaluate")):
        assert run(main, ["--config", str(f), override], prog=prog) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"{prog}: error: {f}: {override.split('=')[0]}=")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------- properties
KEYS = sorted(f"{s.name}.{f.name}" for s in dataclasses.fields(Config)
              if dataclasses.is_dataclass(typing.get_type_hints(Config)[s.name])
              for f in dataclasses.fields(typing.get_type_hints(Config)[s.name]))
SCALAR_TEXT = st.one_of(
    st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from([".nan", "-.inf", "nan", "1e400", "null", "~", "yes", "no", "''", "[]", "{}", "[1, 2]",
                     "[0.5, 2]", "2020-13-45", "2001-01-01", "!!binary AAAA", "!!python/object:os.system {}",
                     "&a [*a]", "{a: 1}", "'", "[", "k400", "cross", "mask", "fsdp"]),
    st.text(max_size=20))


def _outcome(call):
    """What a load gives: the config, or the ConfigError; any other exception fails the property."""
    try:
        return call()
    except ConfigError as e:
        assert str(e) and "\n" not in " ".join(str(e).split())
        return e


@PROPERTY
@given(st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.sampled_from(["train", "x.y", "", "train.lr.x",
                                                                              "model..clip"])), SCALAR_TEXT),
                max_size=4))
def test_any_overrides_give_a_config_or_a_config_error(pairs):
    result = _outcome(lambda: load_config(None, [f"{k}={v}" for k, v in pairs]))
    if isinstance(result, Config):  # what was accepted is in range
        for key, rng in RANGES.items():
            section, name = key.split(".")
            value = getattr(getattr(result, section), name)
            assert all(rng.problem(v) is None for v in (value if isinstance(value, tuple) else [value]))


YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(), st.text(max_size=10),
              st.sampled_from(KEYS + ["train", "model", "data", "eval", "output_dir"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(
        st.one_of(st.sampled_from(["train", "model", "data", "eval", "output_dir", "epochs", "lr", "betas",
                                   "clip", "frame_stride", "num_threads"]), st.text(max_size=5), st.integers()),
        inner, max_size=4)),
    max_leaves=12)


@PROPERTY
@given(YAML_VALUES)
def test_any_yaml_document_gives_a_config_or_a_config_error(document):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "c.yaml"
        f.write_text(yaml.safe_dump(document))
        _outcome(lambda: load_config(f))


@PROPERTY
@given(st.binary(max_size=200))
def test_any_bytes_give_a_config_or_a_config_error(data):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "c.yaml"
        f.write_bytes(data)
        _outcome(lambda: load_config(f))


def test_the_documented_ranges_are_the_checked_ones():
    doc = (REPO / "docs" / "errors-model.md").read_text()
    assert [k for k in RANGES if f"| `{k}` |" not in doc] == []
