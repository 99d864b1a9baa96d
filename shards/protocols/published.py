"""Import published split files (ViFi-CLIP's and FROSTER's) and match their rows to manifest samples.

ViFi-CLIP (`--from-split-files` points at a checkout, or any folder holding `datasets_splits/` and `labels/`):
- base-to-novel: `datasets_splits/base2novel_splits/{k400,hmdb,ucf,ssv2}_splits/` with `fs_base_s{n}_train.txt`,
  `base_val.txt`, `novel_val.txt`; classes `labels/{kinetics_400,hmdb_51,ucf_101,ssv2_174}_{base,novel}_labels.csv`;
- zero-shot: `datasets_splits/{ucf,hmdb}_splits/val{n}.txt` (classes `labels/{ucf_101,hmdb_51}_labels.csv`) and
  `datasets_splits/k600_splits/ZS_split{n}_K600_eval.txt` (classes `labels/ZS_split{n}_K600.csv`).
FROSTER (`zs_label_db/`): `B2N_{k400,hmdb,ucf101,ssv2}/` with `train_s{n}.csv` (or `train_{n}.csv`), `val.csv` (base),
`test.csv` (novel), classes `train_idx2cls.csv` / `test_idx2cls.csv`; zero-shot `{ucf101,hmdb}_split{n}/test.csv`,
`{ucf101,hmdb}_full/test.csv` (labels in the dataset's own order) and `k600_split{n}/val.csv` (ViFi-CLIP's K600 labels).

List lines read `<file> <label>` or `<file>,<label>`. Rows match samples by video id: Kinetics by youtube_id (and
the clip's start second when the file name carries it), UCF/HMDB by file stem (exact, then ignoring case: the
class `HandstandPushups` has files `v_HandStandPushups_*`), SSv2 by id.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict

from .core import Manifest, SplitFile, SplitPlan, by_class, check_disjoint, entries_of, with_descriptions
from .. import sources
from .names import ClassEntry, SplitError, load_prompts, normalise, parse_label_list, readable_name

VIFI_B2N = {"k400": ("k400_splits", "kinetics_400"), "hmdb51": ("hmdb_splits", "hmdb_51"),
            "ucf101": ("ucf_splits", "ucf_101"), "ssv2": ("ssv2_splits", "ssv2_174")}
VIFI_ZS = {"ucf101": ("ucf_splits", "ucf_101"), "hmdb51": ("hmdb_splits", "hmdb_51")}
FROSTER_B2N = {"k400": "B2N_k400", "hmdb51": "B2N_hmdb", "ucf101": "B2N_ucf101", "ssv2": "B2N_ssv2"}
FROSTER_ZS = {"ucf101": "ucf101", "hmdb51": "hmdb"}
FROSTER_REPHRASED = {"ucf101": "ucf101", "hmdb51": "hmdb", "k400": "k400", "k600": "k600"}
KINETICS_FILE = re.compile(r"^(?P<yid>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")
FORMATS = ("auto", "vificlip", "froster")
EXAMPLES = 5


class Tree:
    """The files under a published-splits folder, found by their trailing path ('k400_splits/base_val.txt')."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise SplitError(f"--from-split-files {root}: not a folder")
        self.files: list[str] = []
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = os.path.relpath(folder, self.root).replace(os.sep, "/")
            self.files += [n if rel == "." else f"{rel}/{n}" for n in sorted(names)
                           if n.endswith((".txt", ".csv", ".json"))]

    def find(self, *tails: str) -> str | None:
        """The path of the one file ending with the first tail found; an error if a tail is ambiguous."""
        for tail in tails:
            hits = [f for f in self.files if f == tail or f.endswith("/" + tail)]
            if len(hits) > 1:
                raise SplitError(f"{self.root}: {len(hits)} files end with {tail!r}: {hits[:4]}; point "
                                 f"--from-split-files at one copy")
            if hits:
                return os.path.join(self.root, hits[0])
        return None

    def need(self, *tails: str) -> str:
        path = self.find(*tails)
        if path is None:
            raise SplitError(f"{self.root}: no file ending with {' or '.join(repr(t) for t in tails)}")
        return path


def read_text(path: str) -> str:
    """A published split or class file: UTF-8 (a byte-order mark dropped); other bytes are an error naming the
    file, line and column (`shards.sources.read_text`)."""
    return sources.read_text(path)


def parse_list(text: str, where: str) -> list[tuple[int, str, int]]:
    """(line number, file, label) of a split list; lines `<file> <label>` or `<file>,<label>`."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = re.match(r"^(?P<file>.+?)\s*[,\s]\s*(?P<label>-?\d+)$", line)
        if not m:
            raise SplitError(f"{where}:{lineno}: expected '<file> <label>' or '<file>,<label>', got {line!r}")
        out.append((lineno, m["file"].strip(), int(m["label"])))
    return out


def video_key(dataset: str, file: str) -> tuple[str, int | None]:
    """The video id a list's file names (and, for Kinetics, the clip's start second when present)."""
    stem = file.replace("\\", "/").rsplit("/", 1)[-1]
    stem = re.sub(r"\.(avi|mp4|mkv|webm)$", "", stem, flags=re.I)
    if dataset in ("k400", "k600"):
        m = KINETICS_FILE.match(stem)
        if m:
            return m["yid"], int(m["start"])
    return stem, None


class Matcher:
    """Index a manifest by video id for matching list rows."""

    def __init__(self, m: Manifest):
        self.m = m
        self.exact: dict[str, list[int]] = defaultdict(list)
        self.folded: dict[str, list[int]] = defaultdict(list)
        for i, vid in enumerate(m.col["video_id"]):
            self.exact[vid].append(i)
            self.folded[vid.lower()].append(i)
        self.starts = m.col.get("time_start")

    def find(self, file: str, source_label: int = -1) -> int | None:
        """The manifest row of `file`; several clips of one video are told apart by start second, then class."""
        vid, start = video_key(self.m.dataset, file)
        rows = self.exact.get(vid) or self.folded.get(vid.lower(), [])
        if len(rows) > 1 and start is not None and self.starts is not None:
            rows = [i for i in rows if self.starts[i] == start] or rows
        if len(rows) > 1 and source_label >= 0:
            rows = [i for i in rows if self.m.col["label"][i] == source_label] or rows
        return min(rows, key=lambda i: self.m.col["key"][i]) if rows else None


def published_classes(plan: SplitPlan, m: Manifest, labels: list[tuple[int, str]], where: str,
                      prompts: dict[int, str]) -> list[ClassEntry]:
    """A published label list as classes: its own order and spelling, tied to dataset labels by normalised name."""
    by_norm = {normalise(n): lbl for lbl, n in m.classes}
    entries, unknown = [], []
    for lbl, name in labels:
        src = by_norm.get(normalise(name), -1)
        if src < 0:
            unknown.append(name)
        entries.append(ClassEntry(lbl, name, prompts.get(src, readable_name(name)), src))
    if unknown:
        plan.warn(f"{where}: {len(unknown)} class(es) match no class of the {m.dataset} manifest, so their rows "
                  f"are not checked against the manifest's labels: {unknown[:10]}")
    return entries


def froster_descriptions(plan: SplitPlan, m: Manifest, tree: "Tree", tails: list[str],
                         classes_names: list[str] | None = None) -> None:
    """FROSTER's rephrased class file for these classes files (the first of `tails` found under the tree), read as
    published (`load_prompts`); a note when there is none."""
    path = tree.find(*tails)
    if path is None:
        plan.notes.append(f"{plan.folder}: no {tails[0]} under {tree.root}; the prompts are the readable class names")
        return
    with_descriptions(plan, load_prompts(read_text(path), path, m.classes), classes_names)


def find_rephrased(root: str, dataset: str) -> str | None:
    """FROSTER's label_rephrase/<dataset>_rephrased_classes.json under `root` (cross-dataset K400 training)."""
    return Tree(root).find(f"label_rephrase/{FROSTER_REPHRASED[dataset]}_rephrased_classes.json")


def import_list(plan: SplitPlan, m: Manifest, matcher: Matcher, path: str, name: str, classes_name: str,
                classes: list[ClassEntry]) -> SplitFile:
    """Match one published list to manifest rows; report unmatched rows, duplicates and label disagreements."""
    rows, labels, unmatched, unlabelled, conflicts, dups, seen = [], [], [], [], [], [], set()
    entries = parse_list(read_text(path), path)
    for lineno, file, label in entries:
        if not 0 <= label < len(classes):
            raise SplitError(f"{path}:{lineno}: label {label} is outside its class list ({len(classes)} classes)")
        i = matcher.find(file, classes[label].source_label)
        if i is None:
            unmatched.append(file)
            continue
        if i in seen:
            dups.append(file)
            continue
        seen.add(i)
        src = m.col["label"][i]
        if src is None or src < 0:
            unlabelled.append(file)
        elif classes[label].source_label >= 0 and src != classes[label].source_label:
            conflicts.append(f"{file}: list says {classes[label].class_name!r}, manifest says {m.class_name.get(src)!r}")
        else:
            rows.append(i)
            labels.append(label)
    plan.notes.append(f"{name}: {len(rows)} of {len(entries)} rows of {path} matched")
    if not rows and entries:
        raise SplitError(f"{path}: none of its {len(entries)} rows matches a labelled sample of {m.url} "
                         f"(e.g. {(unmatched + unlabelled)[:3]}): is it the right dataset?")
    if unmatched:
        plan.warn(f"{name}: {len(unmatched)} of {len(entries)} rows of {path} match no manifest sample (missing or "
                  f"rejected videos), e.g. {unmatched[:EXAMPLES]}")
    if unlabelled:   # the pipeline labels each clip from the label stored in its shard, so it needs one
        plan.warn(f"{name}: {len(unlabelled)} rows of {path} are samples the shard store holds unlabeled (a test "
                  f"split) and are left out, e.g. {unlabelled[:EXAMPLES]}")
    if dups:
        plan.warn(f"{name}: {len(dups)} duplicate rows in {path} kept once, e.g. {dups[:EXAMPLES]}")
    if conflicts:
        plan.warn(f"{name}: {len(conflicts)} rows of {path} disagree with the manifest's class and are left out: "
                  + "; ".join(conflicts[:EXAMPLES]))
    return SplitFile(name, classes_name, classes, m, rows, labels)


def _format(tree: Tree, fmt: str, vifi_probe: str, froster_probe: str) -> str:
    if fmt not in FORMATS:
        raise SplitError(f"--split-format must be one of {FORMATS}, not {fmt!r}")
    if fmt != "auto":
        return fmt
    if tree.find(vifi_probe):
        return "vificlip"
    if tree.find(froster_probe):
        return "froster"
    raise SplitError(f"{tree.root}: found neither ViFi-CLIP's {vifi_probe!r} nor FROSTER's {froster_probe!r}")


def import_base2novel(plan: SplitPlan, m: Manifest, root: str, fmt: str, prompts: dict[int, str],
                      num_train_sets: int, shots: int) -> None:
    ds, tree, matcher = m.dataset, Tree(root), Matcher(m)
    vdir, vlabels = VIFI_B2N[ds]
    fdir = FROSTER_B2N[ds]
    fmt = _format(tree, fmt, f"base2novel_splits/{vdir}/novel_val.txt", f"{fdir}/test.csv")
    plan.meta["source"] = fmt
    if fmt == "vificlip":
        base_csv, novel_csv = (tree.need(f"labels/{vlabels}_{h}_labels.csv") for h in ("base", "novel"))
        train = [tree.need(f"base2novel_splits/{vdir}/fs_base_s{n}_train.txt") for n in range(1, num_train_sets + 1)]
        eval_base, eval_novel = (tree.need(f"base2novel_splits/{vdir}/{h}_val.txt") for h in ("base", "novel"))
        header = None
    else:
        base_csv, novel_csv = tree.need(f"{fdir}/train_idx2cls.csv"), tree.need(f"{fdir}/test_idx2cls.csv")
        train = [tree.need(f"{fdir}/train_s{n}.csv", f"{fdir}/train_{n}.csv") for n in range(1, num_train_sets + 1)]
        eval_base, eval_novel = tree.need(f"{fdir}/val.csv"), tree.need(f"{fdir}/test.csv")
        header = False
    base = published_classes(plan, m, parse_label_list(read_text(base_csv), base_csv, header=header), base_csv, prompts)
    novel = published_classes(plan, m, parse_label_list(read_text(novel_csv), novel_csv, header=header), novel_csv,
                              prompts)
    for n, path in enumerate(train, 1):
        f = import_list(plan, m, matcher, path, f"train_s{n}", "classes_base", base)
        counts = [(c.class_name, f.labels.count(c.label)) for c in base]
        short = [(name, k) for name, k in counts if k < shots]
        if short:   # videos of the list missing from this copy, or a list made for fewer shots
            plan.warn(f"{plan.folder}/train_s{n}: {len(short)} base class(es) have fewer than {shots} videos from "
                      f"{path}: " + ", ".join(f"{name!r} ({k})" for name, k in short))
        most = max((k for _, k in counts), default=0)
        if most > shots:
            plan.warn(f"{plan.folder}/train_s{n}: {path} has up to {most} videos per class, more than --shots "
                      f"{shots}; the published list is used as it is")
        plan.files.append(f)
    plan.files.append(import_list(plan, m, matcher, eval_base, "eval_base", "classes_base", base))
    plan.files.append(import_list(plan, m, matcher, eval_novel, "eval_novel", "classes_novel", novel))
    check_disjoint(plan, plan.files[:num_train_sets], plan.files[num_train_sets:])
    if fmt == "froster" and prompts.where is None:
        for half, name in (("train", "classes_base"), ("test", "classes_novel")):
            froster_descriptions(plan, m, tree, [f"{fdir}/{half}_rephrased.json"], [name])


def import_cross(plan: SplitPlan, m: Manifest, k400: Manifest, root: str, fmt: str, prompts: dict[int, str],
                 num_eval_sets: int) -> None:
    ds, tree, matcher = m.dataset, Tree(root), Matcher(m)
    if ds == "k600":
        fmt = _format(tree, fmt, "k600_splits/ZS_split1_K600_eval.txt", "k600_split1/val.csv")
        for n in range(1, num_eval_sets + 1):
            labels_csv = tree.need(f"labels/ZS_split{n}_K600.csv")
            lst = (tree.need(f"k600_splits/ZS_split{n}_K600_eval.txt") if fmt == "vificlip"
                   else tree.need(f"k600_split{n}/val.csv", f"k600_split{n}/test.csv"))
            classes = published_classes(plan, m, parse_label_list(read_text(labels_csv), labels_csv), labels_csv,
                                        prompts)
            plan.files.append(import_list(plan, m, matcher, lst, f"eval_{n}", f"classes_{n}", classes))
            if fmt == "froster" and prompts.where is None:
                froster_descriptions(plan, m, tree, [f"label_rephrase/k600_split{n}_rephrased_classes.json",
                                                     "label_rephrase/k600_rephrased_classes.json"], [f"classes_{n}"])
        plan.meta["source"] = fmt
        return
    vdir, vlabels = VIFI_ZS[ds]
    fdir = FROSTER_ZS[ds]
    fmt = _format(tree, fmt, f"{vdir}/val1.txt", f"{fdir}_split1/test.csv")
    plan.meta["source"] = fmt
    if fmt == "vificlip":
        labels_csv = tree.need(f"labels/{vlabels}_labels.csv")
        classes = published_classes(plan, m, parse_label_list(read_text(labels_csv), labels_csv), labels_csv, prompts)
        lists = [tree.need(f"{vdir}/val{n}.txt") for n in range(1, num_eval_sets + 1)]
        full = None
    else:
        classes = entries_of(m.classes, prompts)    # FROSTER's UCF/HMDB labels are the dataset's own label order
        lists = [tree.need(f"{fdir}_split{n}/test.csv") for n in range(1, num_eval_sets + 1)]
        full = tree.find(f"{fdir}_full/test.csv")
    for n, path in enumerate(lists, 1):
        plan.files.append(import_list(plan, m, matcher, path, f"eval_{n}", f"classes_{n}", classes))
    if full is not None:
        plan.files.append(import_list(plan, m, matcher, full, "eval_full", "classes_full", classes))
    else:
        # ViFi-CLIP publishes no "full" list; it is defined by the official splits, in the imported label order.
        pool = m.where(lambda i: True) if ds == "ucf101" else m.official(1, "train", "test")
        rows, labels = by_class(m, pool, [c for c in classes if c.source_label >= 0])
        plan.files.append(SplitFile("eval_full", "classes_full", classes, m, rows, labels))
    if fmt == "froster" and prompts.where is None:
        froster_descriptions(plan, m, tree, [f"label_rephrase/{FROSTER_REPHRASED[ds]}_rephrased_classes.json"])
