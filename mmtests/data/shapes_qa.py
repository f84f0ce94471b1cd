"""Questions and answers from shapes-world ground truth, for training and testing vision-language models.

Question kinds: colour, shape and position of the big (main) object, size of a named object, count of
objects, describe, and POPE-style yes/no probes ("is there a red star in the image?") whose absent
objects are drawn three ways:

- random: any object (colour + shape) not in the image;
- popular: one of the objects most frequent in the split (POPE's "popular");
- adversarial: an object sharing the colour or the shape of an object in the image; in this world
  attributes are what co-occur (a red circle makes "red" and "circle" likely, "a red star" wrong).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from .facts import COLOURS, IMAGE_SIZE, KINDS, OBJECTS, POPE_KINDS, POSITIONS, SHAPES

NUMBERS = ("zero", "one", "two", "three", "four", "five")

PHRASINGS = {  # the first phrasing of each kind is the one test sets ask
    "colour": ("what colour is the big shape?", "what is the colour of the big object?", "which colour does the big shape have?"),
    "shape": ("what shape is the big object?", "what is the big shape?", "which shape is big?"),
    "position": ("where is the big shape?", "where is the big object in the image?"),
    "size": ("is the {o} big or small?", "how big is the {o}?"),
    "count": ("how many shapes are there?", "how many objects are in the image?"),
    "pope": ("is there {o} in the image?", "is there {o}?"),
    "describe": ("describe the image.", "what is in the image?"),
}


@dataclass(frozen=True)
class QA:
    kind: str  # one of KINDS, or "pope"
    question: str
    answer: str
    pope: str | None = None  # for "pope": the POPE set (random / popular / adversarial), or "present" in training
    about: str | None = None  # the object the question names, "colour shape"


CENTRE_BAND = 8  # pixels: the centre row/column of `position`; main objects are large, so their
# centres gather in the middle of the image and image thirds would make "centre" the answer ~80% of the time


def position(bbox, width: int | None = None, height: int | None = None) -> str:
    """Where an object is, from its bounding box centre: 3 x 3 cells around a central band (boxes of an
    image of `width` x `height` pixels are read in the rendered scene's frame)."""

    def cell(v: float) -> int:
        return 0 if v < (IMAGE_SIZE - CENTRE_BAND) / 2 else 2 if v > (IMAGE_SIZE + CENTRE_BAND) / 2 else 1

    sx, sy = IMAGE_SIZE / (width or IMAGE_SIZE), IMAGE_SIZE / (height or IMAGE_SIZE)
    x0, y0, x1, y1 = bbox
    return POSITIONS[cell((y0 + y1) / 2 * sy)][cell((x0 + x1) / 2 * sx)]


def row_position(row: dict) -> str:
    """The main object's position in a dataset row (resized rows carry their width and height)."""
    return position(row["bbox"], row.get("width"), row.get("height"))


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def objects_of(row: dict) -> list[tuple[str, str, str]]:
    """(colour, shape, size word) of every object in a dataset row, the big main object first."""
    main = (COLOURS[row["colour"]], SHAPES[row["shape"]], "big")
    return [main] + [(d["colour"], d["shape"], "small") for d in row["distractors"]]


def describe(row: dict) -> str:
    (c, s, _), rest = objects_of(row)[0], objects_of(row)[1:]
    text = f"a big {c} {s} in the {row_position(row)}"
    return text + "".join(f" and a small {dc} {ds}" for dc, ds, _ in rest) + "."


def popular_objects(rows, top: int = 10) -> tuple[str, ...]:
    """The `top` objects that occur most often in the split (main objects and distractors)."""
    counts = Counter(f"{c} {s}" for row in rows for c, s, _ in objects_of(row))
    return tuple(o for o, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top])


def absent_object(row: dict, how: str, rng: np.random.Generator, popular: tuple[str, ...]) -> str:
    present = {f"{c} {s}" for c, s, _ in objects_of(row)}
    if how == "random":
        pool = [o for o in OBJECTS if o not in present]
    elif how == "popular":
        pool = [o for o in popular if o not in present] or [o for o in OBJECTS if o not in present]
    elif how == "adversarial":
        colours = {c for c, _, _ in objects_of(row)}
        shapes = {s for _, s, _ in objects_of(row)}
        pool = [o for o in OBJECTS if o not in present and (o.split()[0] in colours or o.split()[1] in shapes)]
    else:
        raise ValueError(f"unknown POPE negative kind {how!r} (known: {', '.join(POPE_KINDS)})")
    return pool[rng.integers(len(pool))]


def ask(row: dict, kind: str, rng: np.random.Generator, canonical: bool = False,
        pope: str | None = None, popular: tuple[str, ...] = ()) -> QA:
    """One question of `kind` about `row`; `canonical` uses the test phrasing instead of a random one."""
    phrasings = PHRASINGS[kind]
    template = phrasings[0] if canonical else phrasings[rng.integers(len(phrasings))]
    objects = objects_of(row)
    colour, shape, _ = objects[0]
    if kind == "colour":
        return QA(kind, template, colour, about=f"{colour} {shape}")
    if kind == "shape":
        return QA(kind, template, shape, about=f"{colour} {shape}")
    if kind == "position":
        return QA(kind, template, row_position(row), about=f"{colour} {shape}")
    if kind == "size":
        c, s, size = objects[0] if len(objects) == 1 or rng.random() < 0.5 else objects[1 + rng.integers(len(objects) - 1)]
        return QA(kind, template.format(o=f"{c} {s}"), size, about=f"{c} {s}")
    if kind == "count":
        return QA(kind, template, NUMBERS[len(objects)])
    if kind == "describe":
        return QA(kind, template, describe(row), about=f"{colour} {shape}")
    if kind == "pope":
        if pope is None or pope == "present":
            c, s, _ = objects[rng.integers(len(objects))]
            return QA(kind, template.format(o=with_article(f"{c} {s}")), "yes", pope="present", about=f"{c} {s}")
        return QA(kind, template.format(o=with_article(absent_object(row, pope, rng, popular))), "no", pope=pope)
    raise ValueError(f"unknown question kind {kind!r} (known: {', '.join((*KINDS, 'pope'))})")


def question_set(rows, kinds=KINDS, pope_kinds=POPE_KINDS, seed: int = 0) -> list[tuple[int, QA]]:
    """A fixed question set: every kind once per image; POPE once per negative kind per image,
    alternating present/absent so that each POPE set is exactly balanced."""
    rows = list(rows)
    popular = popular_objects(rows)
    out = []
    for i, row in enumerate(rows):
        rng = np.random.default_rng([seed, i])
        out += [(i, ask(row, kind, rng, canonical=True)) for kind in kinds]
        for k, how in enumerate(pope_kinds):
            q = ask(row, "pope", rng, canonical=True, pope="present" if (i + k) % 2 == 0 else how, popular=popular)
            out.append((i, replace(q, pope=how)))
    return out
