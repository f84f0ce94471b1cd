"""The session's memo: each result computed once per key, and a failure that will not go away remembered, so a
model or dataset that cannot be had (or a broken entry) is tried and reported once, not once per check."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import DatasetUnavailable, EntryError, ModelUnavailable

T = TypeVar("T")

ABSENT = (ModelUnavailable, DatasetUnavailable)  # not available here: the same answer all session long
ABSENT_OR_BROKEN = (*ABSENT, EntryError)  # for loaders, whose broken entry stays broken too


class Memo:
    """Results and remembered failures of a session's measurements, one store for every cache."""

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[bool, object]] = {}

    def __call__(self, fn: Callable[..., T], remembered: tuple[type[Exception], ...] = ABSENT) -> Callable[..., T]:
        """`fn` computed once per arguments; a failure of a `remembered` type is raised again, not retried."""

        def cached(*args):
            key = (fn, *args)  # a bound method: one cache object's computation, apart from any other's
            if key not in self._entries:
                try:
                    self._entries[key] = (True, fn(*args))
                except remembered as err:
                    self._entries[key] = (False, err)
            ok, value = self._entries[key]
            if not ok:
                raise value
            return value

        return cached
