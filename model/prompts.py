"""Class prompts: the reference's 28 action templates plus the bare class text (29 in all).

Training uses one random template plus the bare text per step (their features averaged); evaluation ensembles
all 29. The class text is the classes file's rephrased description when it has one, else the class name.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch

_FRAMES = ("a photo of", "a video of", "a example of", "a demonstration of")
_SUBJECTS = ("{}", "a person {}", "a person using {}", "a person doing {}", "a person during {}",
             "a person performing {}", "a person practicing {}")
# The reference's templates (CLIP's Kinetics prompt set): 4 framings x 7 subjects, wording kept as published.
TEMPLATES: tuple[str, ...] = tuple(f"{frame} {subject}." for frame in _FRAMES for subject in _SUBJECTS)
BARE = "{}"
ALL_TEMPLATES: tuple[str, ...] = TEMPLATES + (BARE,)  # index len(TEMPLATES) is the bare text
BARE_INDEX = len(TEMPLATES)


def class_text(class_name: str, prompt: str | None = None) -> str:
    """The text that stands for a class: its description if given, else its name with '_' as spaces."""
    text = prompt if prompt is not None and str(prompt).strip() else class_name
    text = re.sub(r"\s+", " ", str(text).replace("_", " ")).strip()
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


def prompt_table(texts: Sequence[str], templates: Sequence[str] = ALL_TEMPLATES) -> list[list[str]]:
    """[template][class] prompt strings."""
    if not texts:
        raise ValueError("empty class list")
    return [[t.format(c) for c in texts] for t in templates]


def sample_template(generator: torch.Generator | None = None) -> int:
    """Index of the training step's random template (never the bare text, which every step adds)."""
    return int(torch.randint(len(TEMPLATES), (1,), generator=generator))
