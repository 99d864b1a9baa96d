"""Class prompts: the reference's 28 action templates plus the bare class text (29 in all), composed as the
official code composes them.

A class text is either FROSTER's entry "Name: description" (a rephrased class file, as the classes file's `prompt`
column carries it) or a plain name. Template i of a class with a description reads

    template_i.format(Name) + " " + "Name: description"     e.g. "a photo of Archery. Archery: A person shoots ..."

and its bare text is the entry itself, "Name: description" (`text_prompt` of the official video model: the
template takes the part before the first ':'). Without a description the official code does the same with the
name alone, so it repeats it ("a photo of Archery. Archery"); frostline's default writes the template once
("a photo of Archery."), and `official=True` reproduces the repetition. The bare text is the name in both.

Training uses one random template plus the bare text per step (their features averaged); evaluation ensembles
all 29. The official zero-shot baseline (the frozen CLIP alone) uses only the 28 templates, formatted with the
class name as the official name-only label files spell it (`name_only`, `zero_shot_table`). A prompt longer than CLIP's 77-token context is an error naming the class
(`tokenize`): the official tokenizer refuses such a prompt too, where open_clip's would cut it silently.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from shards.protocols.names import official_name, readable_name

_FRAMES = ("a photo of", "a video of", "a example of", "a demonstration of")
_SUBJECTS = ("{}", "a person {}", "a person using {}", "a person doing {}", "a person during {}",
             "a person performing {}", "a person practicing {}")
# The reference's templates (CLIP's Kinetics prompt set): 4 framings x 7 subjects, wording kept as published.
TEMPLATES: tuple[str, ...] = tuple(f"{frame} {subject}." for frame in _FRAMES for subject in _SUBJECTS)
BARE = "{}"
ALL_TEMPLATES: tuple[str, ...] = TEMPLATES + (BARE,)  # index len(TEMPLATES) is the bare text
BARE_INDEX = len(TEMPLATES)


def class_text(class_name: str, prompt: str | None = None) -> str:
    """The text that stands for a class: its entry "Name: description" kept verbatim when it has one, else its
    readable name (the description-less prompt, or the class name: "apply_eye_makeup" -> "apply eye makeup")."""
    text = str(prompt).strip() if prompt is not None else ""
    if ":" in text:
        return text
    text = readable_name(text or str(class_name))
    if not text:
        raise ValueError(f"class {class_name!r} has an empty name and no description")
    return text


def class_texts(classes: Sequence[tuple[int, str, str]] | Sequence[str], use_descriptions: bool = True) -> list[str]:
    """Class texts in label order from a loader's `classes` [(label, class_name, prompt)] or plain names."""
    if classes and not isinstance(classes[0], str):
        rows = sorted(classes, key=lambda r: r[0])
        if [r[0] for r in rows] != list(range(len(rows))):
            raise ValueError("class labels must be 0..C-1 without gaps")
        return [class_text(r[1], r[2] if use_descriptions else None) for r in rows]
    return [class_text(c) for c in classes]


def name_only(classes: Sequence[tuple[int, str, str]], dataset: str | None = None) -> list[str]:
    """The classes' names without descriptions, in label order: what the official zero-shot baseline formats its
    28 templates with. A class whose text is a name (no description) keeps it; a described class takes its name
    as the official code's name-only label files spell it (label_db/k400-index2cls.json, zs_label_db/
    *index2cls.json; `official_name`), not the description's Name ("Driving a car: ..." is FROSTER's rephrased
    spelling of "driving car")."""
    rows = sorted(classes, key=lambda r: r[0])
    return [official_name(r[1], dataset) if ":" in str(r[2] or "") else class_text(r[1], r[2]) for r in rows]


def split_text(text: str) -> tuple[str, bool]:
    """(Name, has a description): the Name is the part before the first ':', exactly as the official code takes it."""
    if ":" in text:
        return text.split(":", 1)[0], True
    return text, False


def compose(template: str, text: str, official: bool = False) -> str:
    """One prompt: `template` (one of ALL_TEMPLATES) for the class text `text` (see the module notes)."""
    if template == BARE:
        return text
    name, described = split_text(text)
    if described or official:
        return template.format(name) + " " + text
    return template.format(text)


def prompt_table(texts: Sequence[str], templates: Sequence[str] = ALL_TEMPLATES,
                 official: bool = False) -> list[list[str]]:
    """[template][class] prompt strings."""
    if not texts:
        raise ValueError("empty class list")
    return [[compose(t, c, official) for c in texts] for t in templates]


def zero_shot_table(texts: Sequence[str]) -> list[list[str]]:
    """The official zero-shot baseline's prompts: the 28 templates formatted with the class name alone."""
    if not texts:
        raise ValueError("empty class list")
    return [[t.format(split_text(c)[0]) for c in texts] for t in TEMPLATES]


def tokenize(tokenizer, table: Sequence[Sequence[str]], texts: Sequence[str] | None = None) -> torch.Tensor:
    """Tokens [len(table), C, context] of a prompt table; a prompt longer than the context (77 for CLIP, start and
    end tokens included) is an error naming its class and template instead of a silent cut."""
    context = int(getattr(tokenizer, "context_length", 77))
    flat = [p for row in table for p in row]
    tokens = tokenizer(flat, context_length=context + 1)
    long = (tokens[:, context] != 0).nonzero().flatten().tolist()
    if long:
        c = len(table[0])
        i = long[0]
        name = split_text(texts[i % c])[0] if texts is not None else table[BARE_INDEX if len(table) > BARE_INDEX
                                                                             else 0][i % c]
        raise ValueError(f"class {name!r}: prompt {flat[i]!r} is longer than CLIP's {context}-token context "
                         f"({len(long)} prompt(s) too long in all); shorten its description")
    return tokens[:, :context].reshape(len(table), len(table[0]), context)


def sample_template(generator: torch.Generator | None = None) -> int:
    """Index of the training step's random template (never the bare text, which every step adds)."""
    return int(torch.randint(len(TEMPLATES), (1,), generator=generator))
