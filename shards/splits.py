"""Protocol splits: base-to-novel and cross-dataset split manifests (Parquet) built from shard-store manifests.

A split file is a list of samples the pipeline can read without scanning shards: each row names its shard by
absolute URL plus the sample's byte range (`offset`, `size`), its label in the split's own class list, and the
dataset's label. Its classes file (`label`, `class_name`, `prompt`) sits beside it, named by the split file's
schema metadata `classes_file`.

Splits come from one of two sources:
- generated from `--seed` by hash ranking (see `rank`), so adding or losing a video never reshuffles the rest;
- imported from published split files (ViFi-CLIP's `datasets_splits/` + `labels/`, FROSTER's `zs_label_db/`),
  matched to manifest samples by video id (see shards/protocols/published.py).
"""
from __future__ import annotations

import hashlib
import json
import math
import posixpath
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from .manifest import MANIFEST as MANIFEST_FILE
from .manifest import bad_store_path, parse_table, require_columns, table_bytes
from .protocols import published as pub
from .protocols.core import (B2N_DATASETS, CLASS_SCHEMA, CROSS_DATASETS, OFFICIAL, Manifest, SplitFile,
                             SplitPlan, by_class, check_disjoint, entries_of, few_shot, prompts_for, rank,
                             report_descriptions, warn_short)
from .protocols.names import (ClassEntry, SplitError, SplitWarning, match_names, normalise, novel_classes,
                              parse_name_list)
from .storage import Store, is_remote, join, split_url

__all__ = [
    "B2N_DATASETS", "CROSS_DATASETS", "ClassEntry", "Manifest", "SplitError", "SplitFile", "SplitPlan", "SplitWarning",
    "base2novel", "check_plan", "check_split_set", "cross", "cross_train", "format_summary", "k600_novel", "rank",
    "read_split", "write_plan",
]

# --------------------------------------------------------------------------------------------- base-to-novel


def base2novel(m: Manifest, *, shots: int | None = 16, seed: int = 0, num_train_sets: int = 3,
               class_names: str | None = None, class_names_path: str | None = None,
               split_files: str | None = None, split_format: str = "auto") -> SplitPlan:
    """Plan base2novel/<dataset>/: train_s{1..N}, eval_base, eval_novel and the two classes files.

    Generated rule (no `split_files`): the base classes are the ceil(C/2) classes with the lowest
    rank(seed, "base2novel/classes", class_name); each half keeps the dataset's label order. Training set s{n}
    takes, per base class, the `shots` training videos with the lowest rank(seed, f"base2novel/s{n}", key); every
    training video with `shots` None (`--shots all`: your own videos, the whole training split).
    Training videos are K400/SSv2/folder `train`, UCF/HMDB official split-1 train; evaluation videos are K400/SSv2
    `val`/`validation`, a folder dataset's `test`, UCF/HMDB split-1 test.
    """
    ds = m.dataset
    if ds not in B2N_DATASETS:
        raise SplitError(f"base2novel is defined for {', '.join(B2N_DATASETS)}, not {ds!r}")
    if (shots is not None and shots < 1) or num_train_sets < 1:
        raise SplitError("--shots and --num-train-sets must be at least 1")
    prompts = prompts_for(m, class_names, class_names_path)
    source = "generated" if split_files is None else "published"
    plan = SplitPlan(f"base2novel/{ds}", [], {"protocol": "base2novel", "dataset": ds, "source": source,
                                             "seed": str(seed), "shots": str(shots or "all")})
    if split_files is not None:
        if shots is None:
            raise SplitError("--shots all is for generated splits; published split files fix their own shots")
        pub.import_base2novel(plan, m, split_files, split_format, prompts, num_train_sets, shots)
        report_descriptions(plan, prompts)
        return plan
    if ds in OFFICIAL:
        train_pool, eval_pool = m.official(1, "train"), m.official(1, "test")
    else:
        train_pool, eval_pool = m.in_split("train"), m.eval_rows()
    n_base = math.ceil(len(m.classes) / 2)
    ranked = sorted(m.classes, key=lambda c: rank(seed, "base2novel/classes", c[1]))
    base = entries_of(sorted(ranked[:n_base]), prompts)
    novel = entries_of(sorted(ranked[n_base:]), prompts)
    pool, pool_labels = by_class(m, train_pool, base)
    if shots is not None:
        warn_short(plan, plan.folder, base, pool_labels, shots)
    for n in range(1, num_train_sets + 1):
        rows, labels = few_shot(m, pool, base, shots, seed, f"base2novel/s{n}")
        plan.files.append(SplitFile(f"train_s{n}", "classes_base", base, m, rows, labels))
    plan.files.append(SplitFile("eval_base", "classes_base", base, m, *by_class(m, eval_pool, base)))
    plan.files.append(SplitFile("eval_novel", "classes_novel", novel, m, *by_class(m, eval_pool, novel)))
    check_disjoint(plan, plan.files[:num_train_sets], plan.files[num_train_sets:])
    report_descriptions(plan, prompts)
    return plan


# ---------------------------------------------------------------------------------------------- cross-dataset


def cross_train(k400: Manifest, *, class_names: str | None = None, class_names_path: str | None = None,
                split_files: str | None = None, split_format: str = "auto") -> SplitPlan:
    """Plan cross/k400/: train.parquet (all labelled K400 training videos) and classes.parquet (all classes).

    Without `class_names`, FROSTER's `label_rephrase/k400_rephrased_classes.json` under `split_files` gives the
    descriptions when `split_format` is "froster"."""
    if k400.dataset != "k400":
        raise SplitError(f"{k400.url}: the cross-dataset training manifest must be K400's, not {k400.dataset!r}")
    if class_names is None and split_files is not None and split_format == "froster":
        class_names_path = pub.find_rephrased(split_files, "k400")
        class_names = pub.read_text(class_names_path) if class_names_path else None
    prompts = prompts_for(k400, class_names, class_names_path)
    entries = entries_of(k400.classes, prompts)
    plan = SplitPlan("cross/k400", [], {"protocol": "cross", "dataset": "k400", "source": "generated"})
    plan.files.append(SplitFile("train", "classes", entries, k400, *by_class(k400, k400.in_split("train"), entries)))
    report_descriptions(plan, prompts)
    return plan


def cross(k400: Manifest, m: Manifest, *, seed: int = 0, num_eval_sets: int = 3, classes_per_set: int = 160,
          novel_classes_text: str | None = None, novel_classes_path: str | None = None,
          class_names: str | None = None, class_names_path: str | None = None,
          split_files: str | None = None, split_format: str = "auto") -> SplitPlan:
    """Plan cross/<dataset>/: eval_{1..N}, classes_{1..N} and, for UCF and HMDB, eval_full / classes_full.

    UCF101 and HMDB51: eval_n is official test split n over all classes; "full" is every UCF101 video, and
    HMDB51's split-1 train plus test videos. K600: the novel classes are the K600 classes whose normalised name
    is no K400 class (or the `novel_classes_text` list); eval_n takes the `classes_per_set` novel classes with the
    lowest rank(seed, f"cross/k600/set{n}", class_name), on K600's validation videos, in K600 label order.
    """
    ds = m.dataset
    if ds not in CROSS_DATASETS:
        raise SplitError(f"cross-dataset evaluation is defined for {', '.join(CROSS_DATASETS)}, not {ds!r}")
    prompts = prompts_for(m, class_names, class_names_path)
    source = "generated" if split_files is None else "published"
    plan = SplitPlan(f"cross/{ds}", [], {"protocol": "cross", "dataset": ds, "source": source, "seed": str(seed)})
    if ds in OFFICIAL and not 1 <= num_eval_sets <= 3:
        raise SplitError(f"{ds} has three official test splits; --num-eval-sets must be 1..3, not {num_eval_sets}")
    if split_files is not None:
        pub.import_cross(plan, m, k400, split_files, split_format, prompts, num_eval_sets)
    elif ds in OFFICIAL:
        entries = entries_of(m.classes, prompts)
        for n in range(1, num_eval_sets + 1):
            plan.files.append(SplitFile(f"eval_{n}", f"classes_{n}", entries, m, *by_class(m, m.official(n, "test"),
                                                                                             entries)))
        full = m.where(lambda i: True) if ds == "ucf101" else m.official(1, "train", "test")
        plan.files.append(SplitFile("eval_full", "classes_full", entries, m, *by_class(m, full, entries)))
    else:
        novel = k600_novel(plan, m, k400, novel_classes_text, novel_classes_path)
        if len(novel) < classes_per_set:
            raise SplitError(f"K600 has {len(novel)} novel classes, fewer than --classes-per-set {classes_per_set}")
        pool = m.eval_rows()
        for n in range(1, num_eval_sets + 1):
            chosen = sorted(sorted(novel, key=lambda c: rank(seed, f"cross/k600/set{n}", c[1]))[:classes_per_set])
            entries = entries_of(chosen, prompts)
            plan.files.append(SplitFile(f"eval_{n}", f"classes_{n}", entries, m, *by_class(m, pool, entries)))
    _check_no_train_classes(plan, k400)
    report_descriptions(plan, prompts)
    return plan


def k600_novel(plan: SplitPlan, k600: Manifest, k400: Manifest, text: str | None, where: str | None):
    """K600's classes new relative to K400: by normalised name, or the explicit list `text` (names or id,name)."""
    if text is None:
        novel = novel_classes(k600.classes, k400.classes)
        plan.notes.append(f"K600: {len(novel)} novel classes found by comparing normalised K600 and K400 class "
                          f"names (the papers use 220; pass --novel-classes FILE for an exact list)")
        return novel
    names = parse_name_list(text, where)
    if len(set(map(normalise, names))) != len(names):
        raise SplitError(f"{where}: a class is listed twice")
    labels = match_names(names, k600.classes, where)
    novel = sorted((labels[n], k600.class_name[labels[n]]) for n in names)
    plan.notes.append(f"K600: {len(novel)} novel classes from {where}")
    return novel


def _check_no_train_classes(plan: SplitPlan, k400: Manifest) -> None:
    """K600's zero-shot classes must be unseen in K400 training; warn (not fail) for an explicit list that says so."""
    if plan.meta["dataset"] != "k600":
        return
    seen = {normalise(n) for _, n in k400.classes}
    both = sorted({c.class_name for f in plan.files for c in f.classes if normalise(c.class_name) in seen})
    if both:
        plan.warn(f"{plan.folder}: {len(both)} evaluation class(es) are also K400 classes: {both[:10]}")


# ------------------------------------------------------------------------------------------------- read / write


SET_FILE = "split_set.json"      # the set manifest: written last, names every file of the set with its sha256
SET_KEY = b"split_set"           # the split file's schema metadata: the run that wrote it
SPLIT_COLUMNS = ("key", "shard", "offset", "size", "label", "source_label")   # what a loader reads of a split
CLASS_COLUMNS = ("label", "class_name")


def write_plan(plan: SplitPlan, out: str, settings: dict | None = None) -> list[tuple[str, int, int]]:
    """Write the plan's split and classes files under OUT/<folder> as one set; return (file, classes, samples) rows.

    The set manifest `split_set.json` is replaced first by one that says the set is being written (`"state":
    "writing"`), and written last with the run's id and settings and each file's sha256 and size (`"state":
    "complete"`), so a reader (`check_split_set`) sees either a whole set or one it refuses: a run that stops
    part-way leaves a manifest that says so. Each split file's schema metadata names its set (`split_set`). A
    classes file shared by several split files is written once, before them. One make_splits per --out at a
    time (the caller holds the lock, see tools/make_splits.py).
    """
    store = Store(join(out, plan.folder))
    classes = check_plan(plan)
    run = set_id(plan)
    store.write_bytes(SET_FILE, json.dumps({"run": run, "state": "writing", "plan": plan.meta, "files": {}},
                                           indent=1, sort_keys=True).encode())
    files: dict[str, dict] = {}

    def put(name: str, data: bytes, **about) -> None:
        store.write_bytes(name, data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), **about}

    summary = []
    for name, entries in classes.items():
        table = pa.Table.from_pydict({
            "label": [c.label for c in entries], "class_name": [c.class_name for c in entries],
            "prompt": [c.prompt for c in entries], "source_label": [c.source_label for c in entries]},
            schema=CLASS_SCHEMA.with_metadata({SET_KEY: run.encode()}))
        put(f"{name}.parquet", table_bytes(table))
    for f in plan.files:
        put(f"{f.name}.parquet", table_bytes(f.table(plan.meta | {SET_KEY.decode(): run})),
            classes_file=f"{f.classes_name}.parquet")
        summary.append((posixpath.join(plan.folder, f"{f.name}.parquet"), len(f.classes), len(f.rows)))
    for name, entries in classes.items():
        summary.append((posixpath.join(plan.folder, f"{name}.parquet"), len(entries), 0))
    manifest = {"run": run, "state": "complete", "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "plan": plan.meta, "settings": settings or {}, "files": files}
    store.write_bytes(SET_FILE, json.dumps(manifest, indent=1, sort_keys=True).encode())
    store.clean_tmp()
    return summary


def check_plan(plan: SplitPlan) -> dict[str, list[ClassEntry]]:
    """What a plan must satisfy before any of it is written: one class list per classes file, labels the pipeline
    can use, no empty split. Returns the classes files' entries by name."""
    classes: dict[str, list[ClassEntry]] = {}
    for f in plan.files:
        if classes.setdefault(f.classes_name, f.classes) != f.classes:
            raise SplitError(f"{plan.folder}: two different class lists for {f.classes_name}")
        f.check_labels(f"{plan.folder}/{f.name}")
        if not f.rows:
            raise SplitError(f"{plan.folder}/{f.name}: no samples (its {len(f.classes)} classes have no "
                             f"labelled videos in {f.manifest.url}); an empty split cannot be trained or evaluated")
    return classes


def set_id(plan: SplitPlan) -> str:
    """The id of the set a plan writes: a digest of its settings and of every file's samples, labels and classes,
    so the same run twice writes the same bytes and any other run another id."""
    h = hashlib.sha256(json.dumps(plan.meta, sort_keys=True).encode())
    for f in plan.files:
        h.update(json.dumps([f.name, f.classes_name, [(c.label, c.class_name, c.prompt) for c in f.classes],
                             [f.manifest.col["key"][i] for i in f.rows], f.labels]).encode())
    return h.hexdigest()[:32]


def read_set(folder: str) -> dict | None:
    """The set manifest of the split folder `folder` (None when there is none), checked."""
    store = Store(folder)
    url = store.url_of(SET_FILE)
    try:
        raw = store.read_bytes(SET_FILE)
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SplitError(f"{url}: damaged, not JSON ({str(e).splitlines()[0][:80]}); rerun make_splits") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not (isinstance(files, dict) and isinstance(doc.get("run"), str) and all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values())):
        raise SplitError(f"{url}: damaged, expected {{run, files: {{name: {{sha256, bytes}}}}}}; rerun make_splits")
    return doc


def check_split_set(url: str, data: dict[str, bytes] | None = None, *, whole: bool = True) -> dict | None:
    """Refuse a split file whose set does not belong together; returns the set manifest (None: hand-made files).

    The file at `url` must be listed in its folder's `split_set.json`, and each listed file (`whole`), or the file
    and its classes file, must have the listed sha256; the error names every file that does not, and the run
    that wrote the manifest. A manifest that says the set is still being written is an unfinished set. Split
    files without a manifest beside them (written by other tools, or copied alone) are accepted as they are.
    `data` holds bytes the caller has read already, by file name.
    """
    if not url.endswith(".parquet") or url.endswith(MANIFEST_FILE):
        return None   # a shard store read through its manifest (pipeline.samples.load): no split set
    folder, name = split_url(url)
    store = Store(folder)
    data = dict(data or {})
    doc = read_set(folder)
    if doc is None:
        return None
    if doc.get("state") != "complete":
        raise SplitError(f"{url}: its split set is unfinished ({store.url_of(SET_FILE)} says make_splits run "
                         f"{doc['run']} was still writing it): that run stopped part-way; rerun make_splits")
    files = doc["files"]
    if name not in files:
        raise SplitError(f"{url} is not part of the split set in {folder} (make_splits run {doc['run']} wrote "
                         f"{', '.join(sorted(files))}); it is left from another run: rerun make_splits")
    wanted = sorted(files) if whole else [name, files[name].get("classes_file", "")]
    foreign = []
    for n in wanted:
        if n not in files:
            foreign.append(f"{n} (not listed)")
            continue
        raw = data.get(n)
        if raw is None:
            try:
                raw = data[n] = store.read_bytes(n)
            except FileNotFoundError:
                foreign.append(f"{n} (missing)")
                continue
        if hashlib.sha256(raw).hexdigest() != files[n]["sha256"]:
            foreign.append(n)
    if foreign:
        raise SplitError(f"{folder}: the split files {', '.join(foreign)} do not belong to the set that make_splits "
                         f"run {doc['run']} wrote ({store.url_of(SET_FILE)}): the set mixes runs; rerun make_splits")
    return doc


def read_split(url: str) -> tuple[pa.Table, pa.Table]:
    """Read a split file and its classes file: (rows, classes) with classes' `label`, `class_name`, `prompt`.

    Checked: the two files belong to one set (`check_split_set`), the columns a loader reads are there without
    nulls, every row's shard lies inside the store the split was made from, and every label is a class of the
    classes file. Errors name the file and row."""
    folder, name = split_url(url)
    store = Store(folder)
    raw = {name: store.read_bytes(name)}
    rows = parse_table(raw[name], url)
    meta = rows.schema.metadata or {}
    if b"classes_file" not in meta:
        raise SplitError(f"{url}: not a split file (no classes_file in its schema metadata)")
    classes_name = meta[b"classes_file"].decode("utf-8", "replace")
    if bad_store_path(classes_name) or "/" in classes_name:
        raise SplitError(f"{url}: its classes_file {classes_name!r} is not a file name beside it")
    raw[classes_name] = store.read_bytes(classes_name)
    check_split_set(url, raw, whole=False)
    classes = require_columns(parse_table(raw[classes_name], store.url_of(classes_name)), CLASS_COLUMNS,
                              store.url_of(classes_name))
    require_columns(rows, SPLIT_COLUMNS, url)
    for column in SPLIT_COLUMNS:
        nulls = rows.column(column).null_count
        if nulls:
            row = pc.index(pc.is_null(rows.column(column)), True).as_py()
            raise SplitError(f"{url}: row {row}: no {column} ({nulls} rows like it)")
    _check_shards_inside(rows, url, meta.get(b"store", b"").decode("utf-8", "replace"))
    bad = [lb for lb in set(rows.column("label").to_pylist()) if not 0 <= lb < classes.num_rows]
    if bad:
        raise SplitError(f"{url}: labels {sorted(bad)[:5]} are outside its classes file ({classes.num_rows} classes)")
    return rows, classes


def _check_shards_inside(rows: pa.Table, url: str, store_url: str) -> None:
    """Every row's shard is a URL or absolute path inside the split's store (its `store` metadata; without it,
    any absolute path or URL without `..`); the error names the first row that is not."""
    shards = rows.column("shard").combine_chunks().dictionary_encode()
    prefix = store_url.rstrip("/") + "/" if store_url else ""
    for code, shard in enumerate(shards.dictionary.to_pylist()):
        if prefix:
            why = ("outside the store " + store_url if not shard.startswith(prefix)
                   else bad_store_path(shard[len(prefix):]))
        elif not (is_remote(shard) or shard.startswith("/")):
            why = "not an absolute path or URL"
        else:
            why = "outside its folder ('..')" if ".." in shard.split("/") else None
        if why:
            row = pc.index(shards.indices, code).as_py()
            raise SplitError(f"{url}: row {row} (key {rows.column('key')[row].as_py()!r}): shard {shard!r} is {why}")


def format_summary(rows: list[tuple[str, int, int]]) -> str:
    """The closing table: each file, its classes and its samples (classes files show '-' samples)."""
    w = max([len("file")] + [len(f) for f, _, _ in rows])
    lines = [f"{'file':<{w}}  {'classes':>7}  {'samples':>7}", f"{'-' * w}  {'-' * 7}  {'-' * 7}"]
    for f, c, s in rows:
        lines.append(f"{f:<{w}}  {c:>7}  {(s if not f.rsplit('/', 1)[-1].startswith('classes') else '-'):>7}")
    return "\n".join(lines)
