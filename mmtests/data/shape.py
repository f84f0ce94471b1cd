"""What the checks ask of a dataset against what it has: one rule per kind of shape.

- `at_most`: a count the matrix asks for (a dataset's `limit`, a question set's `images`, an attention check's
  `samples`, a stability check's `single_sample`) against what there is: more asked than there is uses all there
  is, and says so in a `DataWarning` with both counts, never silently.
- `check_class_names`: the class list zero-shot classifies among: two classes or more (among one, every
  prediction is right and the accuracy means nothing), none empty, none listed twice (two identical classifier
  columns would leave the prediction to tie-breaking). An EntryError naming the names and the fix.
- `check_question_rows`: the rows of a question set read from dataset columns: a question and an expected answer
  in every row (text, or a number said as text), a box of four finite numbers with x0 < x1 and y0 < y1 where the
  set has a box column. A row without them would be scored against "None" or a box that is not one: an EntryError
  naming the rows and the fix, never a silently wrong figure.
"""

from __future__ import annotations

import math
import warnings

from ..errors import DataWarning, EntryError

NAMED = 5  # names shown in one message


def at_most(asked: int | None, available: int, where: str, key: str, of: str) -> int:
    """How many of the `available` items to use when `key = asked` in `where` (None: all of them); asking for
    more than there are uses them all, with a DataWarning naming both counts and the fix."""
    if asked is None:
        return available
    if asked <= available:
        return asked
    warnings.warn(f"{where}: {key} = {asked} asks for more {of} than there are ({available}); its checks use the "
                  f"{available} there are. Set {key} = {available} or less in {where}, or give it more {of}",
                  DataWarning, stacklevel=2)
    return available


def check_class_names(names: list[str], what: str, where: str) -> None:
    """The class names zero-shot classifies among, checked: at least two, none empty, none twice."""
    shown = ", ".join(repr(n) for n in names[:NAMED * 2]) + (", ..." if len(names) > NAMED * 2 else "")
    if len(names) < 2:
        raise EntryError(f"{what} has {len(names)} class{'' if len(names) == 1 else 'es'} ({shown or 'none'}): "
                         "zero-shot classification among one class is always right, its accuracy would mean "
                         f"nothing; give {where} two classes or more (an imagefolder: one folder per class; or the "
                         "label column and 'classnames' of a labelled dataset)")
    empty = [i for i, n in enumerate(names) if not n.strip()]
    if empty:
        raise EntryError(f"{what}: class name{'s' if len(empty) > 1 else ''} at "
                         f"{', '.join(f'index {i}' for i in empty[:NAMED])} of {len(names)} "
                         f"{'are' if len(empty) > 1 else 'is'} empty ({shown}); a prompt of an empty name says "
                         f"nothing about its class: name every class ('classnames' in {where})")
    seen: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        seen.setdefault(" ".join(n.split()).casefold(), []).append(i)
    twice = [(names[idx[0]], idx) for idx in seen.values() if len(idx) > 1]
    if twice:
        listed = "; ".join(f"{n!r} at indices {', '.join(map(str, idx))}" for n, idx in twice[:NAMED])
        raise EntryError(f"{what}: class names listed more than once ({listed}) among {len(names)}: their "
                         "classifier columns would be identical and the prediction between them decided by "
                         f"tie-breaking; give each class its own name ('classnames' in {where}), or merge the classes")


def _row_problem(question, answer, box, boxed: bool) -> str | None:
    for key, value in (("question", question), ("answer", answer)):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip() \
                or isinstance(value, float) and not math.isfinite(value):
            return f"{key} {value!r}"
    if not boxed:
        return None
    numbers = isinstance(box, (list, tuple)) and len(box) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
    if not numbers or not (box[0] < box[2] and box[1] < box[3]):
        return f"box {box!r} (four numbers x0, y0, x1, y1 in pixels, x0 < x1 and y0 < y1)"
    return None


def check_question_rows(questions: list, answers: list, boxes: list | None, what: str, where: str) -> None:
    """Every row of a question set read from columns has a question, an expected answer and, with a box column,
    a box; else an EntryError naming the rows (and how many) and the fix."""
    bad = [(i, problem) for i, (q, a, b) in enumerate(zip(questions, answers, boxes or [None] * len(questions),
                                                            strict=True))
           if (problem := _row_problem(q, a, b, boxes is not None))]
    if bad:
        shown = "; ".join(f"row {i}: {problem}" for i, problem in bad[:NAMED])
        raise EntryError(f"{what}: {len(bad)} of {len(questions)} rows cannot be asked and scored ({shown}"
                         f"{'; ...' if len(bad) > NAMED else ''}); give every row a question and its answer (and a "
                         f"box), or leave those rows out of the dataset ({where})")
