"""The data model of the protocol splits: a manifest view, split files and plans, the seeded ranking."""
from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass, field

import pyarrow as pa

from ..manifest import CLASSES, MANIFEST, check_store_paths, read_table, require_columns
from ..storage import Store
from .names import ClassEntry, Descriptions, SplitError, SplitWarning, load_prompts, normalise, readable_name

B2N_DATASETS = ("k400", "hmdb51", "ucf101", "ssv2", "folder")
CROSS_DATASETS = ("ucf101", "hmdb51", "k600")
OFFICIAL = ("ucf101", "hmdb51")          # datasets whose train/test membership is the official split1..3 columns
EVAL_SPLITS = ("val", "validation", "test")  # the evaluation split: Kinetics and SSv2 (val), a folder dataset (test)

ROW_SCHEMA = pa.schema([
    pa.field("key", pa.string()),
    pa.field("shard", pa.string()),          # absolute: a local path or s3://...
    pa.field("offset", pa.int64()),
    pa.field("size", pa.int64()),
    pa.field("label", pa.int32()),           # 0-based in this file's classes file
    pa.field("class_name", pa.string()),
    pa.field("source_label", pa.int32()),    # the dataset's label (classes.parquet of the shard store); -1: none
    pa.field("dataset", pa.string()),
    pa.field("video_id", pa.string()),
    pa.field("num_frames", pa.int32()),
    pa.field("fragment_offsets", pa.list_(pa.int64())),  # the stored stream's fragment table (null: not
    pa.field("fragment_frames", pa.list_(pa.int32())),   # fragmented); the pipeline decodes from a fragment
])
CLASS_SCHEMA = pa.schema([
    pa.field("label", pa.int32()),
    pa.field("class_name", pa.string()),
    pa.field("prompt", pa.string()),
    pa.field("source_label", pa.int32()),
])
_FRAGMENTS = ("fragment_offsets", "fragment_frames")   # optional: stores written before fragmented MP4 lack them
_COLUMNS = ("key", "shard", "offset", "size", "label", "class_name", "dataset", "video_id", "num_frames", "split")



def rank(seed: int, purpose: str, item: str) -> str:
    """The sort key of `item` for a seeded draw: sha256 of (seed, purpose, item).

    Drawing the first K items by this key is deterministic on every machine and Python version, independent of
    manifest row order, and stable when other items come or go. Different `purpose` strings give independent
    draws (the three training sets, the three K600 class subsets).
    """
    return hashlib.sha256(f"frostline\0{seed}\0{purpose}\0{item}".encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------- manifests


class Manifest:
    """A shard store's manifest and class list, with the columns the splits need as Python lists."""

    def __init__(self, url: str, table: pa.Table, classes: pa.Table, dataset: str | None = None):
        self.store = Store(url)
        self.url = self.store.url
        missing = [c for c in _COLUMNS if c not in table.column_names]
        if missing:
            raise SplitError(f"{self.store.url_of(MANIFEST)}: missing column(s) {missing}")
        names = table.column("dataset").unique().to_pylist()
        if dataset is None:
            if len(names) != 1:
                raise SplitError(f"{self.store.url_of(MANIFEST)}: expected one dataset, found {names}")
            dataset = names[0]
        elif names and names != [dataset]:
            raise SplitError(f"{self.store.url_of(MANIFEST)}: is a manifest of {names}, not {dataset!r}")
        self.dataset = dataset
        keep = [c for c in table.column_names if c in _COLUMNS or c in ("time_start", "split1", "split2", "split3")
                + _FRAGMENTS]
        self.col = table.select(keep).to_pydict()
        self.n = table.num_rows
        self.classes: list[tuple[int, str]] = sorted(zip(classes.column("label").to_pylist(),
                                                         classes.column("class_name").to_pylist()))
        self.class_name = dict(self.classes)
        require_columns(table, _COLUMNS, self.store.url_of(MANIFEST))
        check_store_paths(table, self.store.url_of(MANIFEST))
        require_columns(classes, ("label", "class_name"), self.store.url_of(CLASSES))
        shards = {s: self.store.url_of(s) for s in set(self.col["shard"])}
        self.shard_url = [shards[s] for s in self.col["shard"]]

    @classmethod
    def load(cls, url: str, dataset: str | None = None) -> "Manifest":
        store = Store(url)
        for rel in (MANIFEST, CLASSES):
            if not store.exists(rel):
                raise SplitError(f"{store.url_of(rel)} does not exist: is {url} a shard store (tools/make_shards.py)?")
        return cls(url, read_table(store, MANIFEST), read_table(store, CLASSES), dataset)

    def labelled(self, i: int) -> bool:
        return self.col["label"][i] is not None and self.col["label"][i] >= 0

    def where(self, pred) -> list[int]:
        return [i for i in range(self.n) if self.labelled(i) and pred(i)]

    def in_split(self, *names: str) -> list[int]:
        split = self.col["split"]
        return self.where(lambda i: split[i] in names)

    def official(self, n: int, *members: str) -> list[int]:
        """Rows whose official split `n` membership (manifest column split{n}) is one of `members`."""
        col = f"split{n}"
        if col not in self.col:
            raise SplitError(f"{self.store.url_of(MANIFEST)}: no column {col!r}: the official split membership of "
                             f"{self.dataset} is needed here")
        values = self.col[col]
        return self.where(lambda i: values[i] in members)

    def eval_rows(self) -> list[int]:
        for name in EVAL_SPLITS:
            rows = self.in_split(name)
            if rows:
                return rows
        raise SplitError(f"{self.store.url_of(MANIFEST)}: no labelled rows in split {' or '.join(EVAL_SPLITS)}")


# ------------------------------------------------------------------------------------------------- split plans


@dataclass
class SplitFile:
    """One split Parquet file: rows of one manifest, their labels in `classes`, and the classes file's name."""

    name: str                       # "train_s1" -> train_s1.parquet
    classes_name: str               # "classes_base" -> classes_base.parquet
    classes: list[ClassEntry]
    manifest: Manifest
    rows: list[int]
    labels: list[int]

    def table(self, meta: dict[str, str]) -> pa.Table:
        m, names = self.manifest, [c.class_name for c in self.classes]
        order = sorted(range(len(self.rows)), key=lambda j: (m.shard_url[self.rows[j]], m.col["offset"][self.rows[j]]))
        rows = [self.rows[j] for j in order]
        labels = [self.labels[j] for j in order]
        data = {
            "key": [m.col["key"][i] for i in rows],
            "shard": [m.shard_url[i] for i in rows],
            "offset": [m.col["offset"][i] for i in rows],
            "size": [m.col["size"][i] for i in rows],
            "label": labels,
            "class_name": [names[lb] for lb in labels],
            "source_label": [m.col["label"][i] for i in rows],
            "dataset": [m.col["dataset"][i] for i in rows],
            "video_id": [m.col["video_id"][i] for i in rows],
            "num_frames": [m.col["num_frames"][i] for i in rows],
        }
        for c in _FRAGMENTS:
            data[c] = [m.col[c][i] for i in rows] if c in m.col else [None] * len(rows)
        md = {b"classes_file": f"{self.classes_name}.parquet".encode(), b"store": m.url.encode()}
        md.update({k.encode(): str(v).encode() for k, v in meta.items()})
        return pa.Table.from_pydict(data, schema=ROW_SCHEMA.with_metadata(md))

    def check_labels(self, where: str) -> None:
        """What the pipeline relies on: every sample has a stored label, and each maps to one split label."""
        seen: dict[int, int] = {}
        for i, lb in zip(self.rows, self.labels):
            src = self.manifest.col["label"][i]
            if src is None or src < 0 or seen.setdefault(src, lb) != lb:
                raise SplitError(f"{where}: sample {self.manifest.col['key'][i]!r} (dataset label {src}) cannot be "
                                 f"split label {lb}" + (f": its class is already split label {seen[src]}"
                                                        if src is not None and src >= 0 else ""))

    def keys(self) -> set[str]:
        return {self.manifest.col["key"][i] for i in self.rows}


@dataclass
class SplitPlan:
    """Everything one command writes under one folder (e.g. base2novel/ucf101), plus what to tell the user."""

    folder: str
    files: list[SplitFile]
    meta: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        warnings.warn(msg, SplitWarning, stacklevel=3)


def entries_of(classes: list[tuple[int, str]], prompts: dict[int, str]) -> list[ClassEntry]:
    """Classes in the given order, relabelled 0..n-1; `classes` holds (source label, name). The prompt is the
    class's description when `prompts` has one, else its readable name (`readable_name`)."""
    return [ClassEntry(i, name, prompts.get(src, readable_name(name)), src) for i, (src, name) in enumerate(classes)]


def by_class(m: Manifest, rows: list[int], entries: list[ClassEntry]) -> tuple[list[int], list[int]]:
    """Keep the rows whose dataset label is one of `entries`, labelled by position in `entries`."""
    to_split = {e.source_label: e.label for e in entries}
    kept = [i for i in rows if m.col["label"][i] in to_split]
    return kept, [to_split[m.col["label"][i]] for i in kept]


def few_shot(m: Manifest, pool: list[int], entries: list[ClassEntry], shots: int | None, seed: int, purpose: str):
    """Per class, the `shots` pool rows with the lowest rank(seed, purpose, key): all of them when fewer (or when
    `shots` is None)."""
    per_class: dict[int, list[int]] = {e.label: [] for e in entries}
    to_split = {e.source_label: e.label for e in entries}
    for i in pool:
        per_class[to_split[m.col["label"][i]]].append(i)
    rows, labels = [], []
    for lbl, members in per_class.items():
        members.sort(key=lambda i: rank(seed, purpose, m.col["key"][i]))
        rows += members[:shots]
        labels += [lbl] * len(members[:shots])
    return rows, labels


def prompts_for(m: Manifest, text: str | None, where: str | None) -> Descriptions:
    return load_prompts(text, where, m.classes) if text is not None else Descriptions({}, None)


def with_descriptions(plan: SplitPlan, descriptions: Descriptions, classes_names: list[str] | None = None) -> None:
    """Give the classes of the plan's classes files (all, or those named) their descriptions, then report."""
    for f in plan.files:
        if classes_names is None or f.classes_name in classes_names:
            f.classes = [dataclasses.replace(c, prompt=descriptions[c.source_label])
                         if c.source_label in descriptions else c for c in f.classes]
    report_descriptions(plan, descriptions, classes_names)


def report_descriptions(plan: SplitPlan, descriptions: Descriptions, classes_names: list[str] | None = None) -> None:
    """The summary line "N of M classes got a description from FILE", a warning naming every class of the plan
    without one, and a note for each entry matched only loosely (another spelling of the class)."""
    if descriptions.where is None:
        return
    seen: dict[tuple[str, int], ClassEntry] = {}
    for f in plan.files:
        if classes_names is None or f.classes_name in classes_names:
            for c in f.classes:
                seen.setdefault((f.classes_name, c.label), c)
    names = sorted({c.class_name for c in seen.values()})
    missing = sorted({c.class_name for c in seen.values() if c.source_label not in descriptions})
    where = ", ".join(sorted({k[0] for k in seen}))
    plan.notes.append(f"{plan.folder}: {len(names) - len(missing)} of {len(names)} classes got a description from "
                      f"{descriptions.where} ({where})")
    for shown, name in descriptions.loose_matches:
        plan.notes.append(f"{descriptions.where}: entry {shown!r} matched class {name!r} (another spelling)")
    if missing:
        plan.warn(f"{descriptions.where}: no description for {len(missing)} class(es) of {plan.folder}, which keep "
                  f"their readable name: " + ", ".join(repr(n) for n in missing[:20])
                  + (f" (+{len(missing) - 20} more)" if len(missing) > 20 else ""))


def check_disjoint(plan: SplitPlan, train: list[SplitFile], evals: list[SplitFile]) -> None:
    """No evaluation video in a training set; base and novel classes disjoint (by id and by normalised name)."""
    train_keys = set().union(*(f.keys() for f in train)) if train else set()
    for f in evals:
        both = sorted(train_keys & f.keys())
        if both:
            raise SplitError(f"{plan.folder}/{f.name}: {len(both)} evaluation video(s) are also in a training set, "
                             f"e.g. {both[:5]}")
    names = {f.classes_name: f.classes for f in plan.files}
    if "classes_base" in names and "classes_novel" in names:
        base, novel = names["classes_base"], names["classes_novel"]
        ids = {c.source_label for c in base if c.source_label >= 0} & {c.source_label for c in novel}
        norm = {normalise(c.class_name) for c in base} & {normalise(c.class_name) for c in novel}
        if ids or norm:
            raise SplitError(f"{plan.folder}: base and novel classes overlap: "
                             f"{sorted(norm)[:10] or sorted(ids)[:10]}")


def warn_short(plan: SplitPlan, where: str, entries: list[ClassEntry], labels: list[int], shots: int) -> None:
    """Warn, naming them, about base classes with fewer than `shots` training videos (all of theirs are used)."""
    counts = {e.label: 0 for e in entries}
    for lb in labels:
        counts[lb] += 1
    short = [(entries[lb].class_name, c) for lb, c in counts.items() if c < shots]
    if short:
        plan.warn(f"{where}: {len(short)} base class(es) have fewer than {shots} training videos; "
                  f"all of their videos are used: " + ", ".join(f"{n!r} ({c})" for n, c in short))
