"""Class-name rules shared by the protocols: normalisation, label lists, prompt files, K600's novel classes.

Published label lists spell classes their own way ("Apply Eye Makeup" vs classInd's "ApplyEyeMakeup",
"HandstandPushups" vs files named "v_HandStandPushups_*"), so names are compared after `normalise`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass


class SplitError(ValueError):
    """Bad input to the split builder: the message names the file, row or class."""


class SplitWarning(UserWarning):
    """Something a user must know about a split (a short class, unmatched rows) that is not fatal."""


def normalise(name: str) -> str:
    """Lower case, no punctuation, no whitespace: 'Apply Eye Makeup' == 'ApplyEyeMakeup' == 'apply_eye_makeup'."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass(frozen=True)
class ClassEntry:
    """One row of a classes file: `label` is 0-based in that file, `source_label` is the dataset's own id (-1: none)."""

    label: int
    class_name: str
    prompt: str
    source_label: int


def parse_label_list(text: str, where: str, *, header: bool | None = None) -> list[tuple[int, str]]:
    """Parse `id,name` lines (ViFi-CLIP `labels/*.csv` with header, FROSTER `*_idx2cls.csv` without).

    Names may hold unquoted commas (SSv2: "Laying something on the table on its side, not upright"), so each line
    is split on its first comma only. Ids must be 0..n-1, each once.
    """
    out: list[tuple[int, str]] = []
    lines = text.splitlines()
    for lineno, line in enumerate(lines, 1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        head, sep, name = line.partition(",")
        if lineno == 1 and header is not False and head.strip().lower() == "id":
            continue
        if not sep or not head.strip().lstrip("-").isdigit():
            raise SplitError(f"{where}:{lineno}: expected 'id,name', got {line!r}")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('""', '"')
        out.append((int(head), name))
    ids = [i for i, _ in out]
    if sorted(ids) != list(range(len(ids))):
        raise SplitError(f"{where}: label ids must be 0..{len(ids) - 1}, each once; got {sorted(ids)[:5]}...")
    return sorted(out)


def parse_name_list(text: str, where: str) -> list[str]:
    """Class names one per line, or an `id,name` CSV (with or without header); '#' starts a comment line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if lines and all("," in ln and ln.split(",", 1)[0].strip().isdigit() for ln in lines[1:]) and (
            lines[0].split(",", 1)[0].strip().lower() in ("id",) or lines[0].split(",", 1)[0].strip().isdigit()):
        return [name for _, name in parse_label_list("\n".join(lines), where)]
    return lines


def match_names(names: list[str], classes: list[tuple[int, str]], where: str) -> dict[str, int]:
    """Map each name to a dataset label through `normalise`; error naming every name that matches no class."""
    index = {normalise(n): lbl for lbl, n in classes}
    out, missing = {}, []
    for n in names:
        lbl = index.get(normalise(n))
        if lbl is None:
            missing.append(n)
        else:
            out[n] = lbl
    if missing:
        raise SplitError(f"{where}: {len(missing)} class(es) not in the dataset's class list: "
                         + ", ".join(repr(m) for m in missing[:10]))
    return out


def novel_classes(k600: list[tuple[int, str]], k400: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """K600 classes whose normalised name is no K400 class's. On the real lists this finds 231, not the papers' 220:
    K600 renamed some K400 classes ("dying hair" -> "dyeing hair"); pass an explicit list for the published set."""
    seen = {normalise(n) for _, n in k400}
    return [(lbl, n) for lbl, n in k600 if normalise(n) not in seen]


def load_prompts(text: str, where: str, classes: list[tuple[int, str]]) -> dict[int, str]:
    """Read a `--class-names` JSON mapping {class id or class name: prompt text} into {source label: text}.

    Numeric keys are the dataset's label ids (classes.parquet); other keys are class names, compared normalised.
    An unknown key is an error naming it. A FROSTER-style text "Name: description" whose Name is another class
    of this dataset is an error too: it means the ids were written for a different label order.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SplitError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise SplitError(f"{where}: expected a JSON object {{class: text}}, got {type(data).__name__}")
    by_label = dict(classes)
    by_norm = {normalise(n): lbl for lbl, n in classes}
    out: dict[int, str] = {}
    unknown = []
    for key, text_ in data.items():
        if not isinstance(text_, str) or not text_.strip():
            raise SplitError(f"{where}: class {key!r}: the prompt must be a non-empty string")
        key_s = str(key).strip()
        lbl = int(key_s) if key_s.lstrip("-").isdigit() else by_norm.get(normalise(key_s))
        if lbl is None or lbl not in by_label:
            unknown.append(key_s)
            continue
        head = text_.split(":", 1)[0] if ":" in text_ else None
        if head is not None and normalise(head) in by_norm and by_norm[normalise(head)] != lbl:
            raise SplitError(f"{where}: key {key_s!r} is class {by_label[lbl]!r} but its text starts with "
                             f"{head.strip()!r}, another class: were the ids written for another label order?")
        out[lbl] = text_.strip()
    if unknown:
        raise SplitError(f"{where}: unknown class(es): " + ", ".join(repr(u) for u in unknown[:10])
                         + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""))
    return out
