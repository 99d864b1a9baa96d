"""Class-name rules shared by the protocols: normalisation, label lists, prompt files, K600's novel classes.

Published label lists spell classes their own way ("Apply Eye Makeup" vs classInd's "ApplyEyeMakeup",
"HandstandPushups" vs files named "v_HandStandPushups_*"), so names are compared after `normalise`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


_INTEGER = re.compile(r"-?[0-9]{1,18}")   # a label id as the files write it (ASCII digits)


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
        if not sep or not _INTEGER.fullmatch(head.strip()):
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
    heads = [ln.split(",", 1)[0].strip() for ln in lines]
    if lines and all("," in ln and _INTEGER.fullmatch(h) for ln, h in zip(lines[1:], heads[1:])) and (
            heads[0].lower() == "id" or _INTEGER.fullmatch(heads[0])):
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


# Published spellings that name a dataset class another way than its own label list (FROSTER's K400 files write
# "Barbecuing" for K400's "barbequing"); compared after `loose`.
ALIASES = {"barbecuing": "barbequing"}
# Dataset folder names whose readable form is not the CamelCase split (UCF101's classInd "YoYo" is "Yoyo").
READABLE_EXCEPTIONS = {"YoYo": "Yoyo"}
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def readable_name(name: str) -> str:
    """A class name as words, the way the published label lists spell it: UCF101's CamelCase folder names split
    ("ApplyEyeMakeup" -> "Apply Eye Makeup"), HMDB51's underscores as spaces ("brush_hair" -> "brush hair"),
    SSv2's template brackets dropped ("Putting [something] on a surface" -> "Putting something on a surface").
    Names that already have spaces keep their spelling and case (K400's "passing American football (in game)")."""
    if name in READABLE_EXCEPTIONS:
        return READABLE_EXCEPTIONS[name]
    text = name.replace("[", "").replace("]", "").replace("_", " ")
    if not re.search(r"\s", text.strip()):
        text = _CAMEL.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def loose(name: str) -> str:
    """`normalise` without the articles a/an/the, and with the known alias spellings: the second chance a published
    class name gets ("Driving a car" = "driving car", "Putting a number of something onto something")."""
    words = [w for w in re.split(r"[^0-9a-z]+", name.lower()) if w and w not in ("a", "an", "the")]
    key = "".join(words)
    return ALIASES.get(key, key)


@lru_cache(maxsize=1)
def k400_names() -> tuple[str, ...]:
    """Kinetics-400's class names as the official name-only label file spells them (k400_names.txt)."""
    lines = Path(__file__).with_name("k400_names.txt").read_text().splitlines()
    return tuple(ln for ln in lines if ln and not ln.startswith("#"))


def official_name(name: str, dataset: str | None = None) -> str:
    """A class's name without description, spelled as the official code's name-only label files
    (`*index2cls.json`). Those equal the published label lists, i.e. `readable_name`; for Kinetics-400 a known
    spelling variant ("Driving a car", "Barbecuing", "Skiing cross-country": FROSTER's rephrased files) takes
    Kinetics-400's own spelling ("driving car", "barbequing", "skiing crosscountry")."""
    text = readable_name(name)
    if dataset != "k400":
        return text
    names = k400_names()
    lower = {n.lower(): n for n in names}
    if text.lower() in lower:
        return lower[text.lower()]
    return {loose(n): n for n in names}.get(loose(text), text)


class Descriptions(dict):
    """{dataset label: class text} read from a `--class-names` file, plus where it came from and which entries
    matched only loosely (`loose`)."""

    def __init__(self, texts: dict[int, str], where: str | None, loose_matches: list[tuple[str, str]] = ()):
        super().__init__(texts)
        self.where = where
        self.loose_matches = list(loose_matches)


def split_entry(text: str) -> tuple[str, str] | None:
    """FROSTER's entry "Name: description" -> (Name, whole entry); None when the text has no ':'."""
    if ":" not in text:
        return None
    return text.split(":", 1)[0].strip(), text


def load_prompts(text: str, where: str, classes: list[tuple[int, str]]) -> Descriptions:
    """Read a `--class-names` JSON object into {dataset label: text}.

    Two layouts, told apart entry by entry:
    - FROSTER's rephrased files, unchanged: keys are indices in *that file's own* class order, values
      "Name: description". Such an entry is matched to a class by its Name (normalised, then `loose`), never by its
      key; a Name that is no class of the dataset is an error naming it.
    - frostline's {class name or dataset label id: text}: a key that is a class name wins; a numeric key with a text
      that has no "Name:" part is the dataset's label id.
    Two entries for one class is an error. The text is kept whole (the prompts compose it, see model/prompts.py).
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise SplitError(f"{where}: not valid JSON: {str(e).splitlines()[0][:120]}") from None
    if not isinstance(data, dict):
        raise SplitError(f"{where}: expected a JSON object {{class: text}}, got {type(data).__name__}")
    by_label = dict(classes)
    by_norm = {normalise(n): lbl for lbl, n in classes}
    by_loose: dict[str, int | None] = {}
    for lbl, n in classes:
        by_loose[loose(n)] = None if loose(n) in by_loose else lbl   # None: two classes share it, never matched

    def find(name: str) -> tuple[int | None, bool]:
        lbl = by_norm.get(normalise(name))
        if lbl is not None:
            return lbl, False
        return by_loose.get(loose(name)), True

    out: dict[int, str] = {}
    source: dict[int, str] = {}
    unknown, loose_matches = [], []
    for key, text_ in data.items():
        if not isinstance(text_, str) or not text_.strip():
            raise SplitError(f"{where}: class {key!r}: the prompt must be a non-empty string")
        key_s, text_ = str(key).strip(), text_.strip()
        numeric = bool(_INTEGER.fullmatch(key_s))
        entry = split_entry(text_)
        if not numeric:
            lbl, fuzzy = find(key_s)
            shown = key_s
        elif entry is not None:
            lbl, fuzzy = find(entry[0])
            shown = entry[0]
        else:
            lbl, fuzzy, shown = (int(key_s) if int(key_s) in by_label else None), False, key_s
        if lbl is None:
            unknown.append(shown)
            continue
        if fuzzy:
            loose_matches.append((shown, by_label[lbl]))
        if lbl in out:
            raise SplitError(f"{where}: entries {source[lbl]!r} and {key_s!r} both describe class {by_label[lbl]!r}")
        out[lbl], source[lbl] = text_, key_s
    if unknown:
        raise SplitError(f"{where}: {len(unknown)} entr{'y names' if len(unknown) == 1 else 'ies name'} no class of "
                         f"the dataset: " + ", ".join(repr(u) for u in unknown[:10])
                         + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""))
    return Descriptions(out, where, loose_matches)
