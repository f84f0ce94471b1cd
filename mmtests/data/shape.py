"""What the checks ask of a dataset against what it has: one rule per kind of shape.

- `at_most`: a count the matrix asks for (a dataset's `limit`, a question set's `images`, an attention check's
  `samples`, a stability check's `single_sample`) against what there is: more asked than there is uses all there
  is, and says so in a `DataWarning` with both counts, never silently.
- `check_class_names`: the class list zero-shot classifies among: two classes or more (among one, every
  prediction is right and the accuracy means nothing), none empty, none listed twice (two identical classifier
  columns would leave the prediction to tie-breaking). An EntryError naming the names and the fix.
"""

from __future__ import annotations

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
