"""The session's memo: each result computed once per key, and a failure remembered, so a model, a dataset or a
measurement that fails is tried and reported once, not once per check.

A failure that will not go away by asking again (`remembered`: not available here, a broken entry) is raised again
as itself, its one-line message each time. Any other exception (a crash: a library's RuntimeError, a ValueError
from an adapter, an IndexError in an evaluation) is raised as it came to the check that met it first (one
traceback), and to every later check as `CrashedEarlier`, one line naming that first check. Running out of memory
is not remembered (a smaller batch, or memory freed since, may fit: `errors.out_of_memory`), and what is not an
Exception (KeyboardInterrupt, SystemExit, pytest's skip, fail and xfail) passes through untouched."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import CrashedEarlier, DatasetUnavailable, EntryError, ModelUnavailable, out_of_memory

T = TypeVar("T")

ABSENT = (ModelUnavailable, DatasetUnavailable)  # not available here: the same answer all session long
ABSENT_OR_BROKEN = (*ABSENT, EntryError)  # and a broken entry, which stays broken: each said in one line


def no_check() -> str | None:
    """The check being run, unknown (outside a pytest session)."""
    return None


class Memo:
    """Results and remembered failures of a session's measurements, one store for every cache. `current` names the
    check being run (the plugin passes pytest's), so that a later check can say which one crashed first."""

    def __init__(self, current: Callable[[], str | None] = no_check) -> None:
        self._entries: dict[tuple, tuple[bool, object]] = {}
        self.current = current

    def __call__(self, fn: Callable[..., T], remembered: tuple[type[Exception], ...] = ABSENT_OR_BROKEN
                 ) -> Callable[..., T]:
        """`fn` computed once per arguments; a failure is remembered (see the module's docstring), not retried."""

        def cached(*args):
            key = (fn, *args)  # a bound method: one cache object's computation, apart from any other's
            if key not in self._entries:
                try:
                    self._entries[key] = (True, fn(*args))
                except Exception as err:
                    if out_of_memory(err):
                        raise
                    again = err if isinstance(err, (*remembered, CrashedEarlier)) else CrashedEarlier(err, self.current())
                    self._entries[key] = (False, again)
                    raise
            ok, value = self._entries[key]
            if not ok:
                raise value
            return value

        return cached
