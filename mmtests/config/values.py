"""Kinds of matrix values: each checks one TOML value and names the problem in the words of the matrix file.

The schema (schema.py) gives every key one kind; `read` returns the value to keep, or notes the problem in
`ctx.problems` and returns a fallback.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import resolve

TOML_TYPES = {bool: "true or false", str: "a string", int: "a number", float: "a number", dict: "a table",
              list: "a list"}


@dataclass
class Context:
    """What reading one entry needs besides the entry: the matrix file's folder, what is read so far, problems."""

    base: Path
    matrix: Any  # the `Matrix` read so far (matrix.py, which reads through these kinds: not imported here)
    problems: list[str]


def toml(value) -> str:
    """A value as the matrix file spells it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def toml_type(value) -> str:
    return next((name for t, name in TOML_TYPES.items() if isinstance(value, t)), type(value).__name__)


def did_you_mean(key: str, known) -> str:
    close = difflib.get_close_matches(key, sorted(known), 1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"


def unknown(kind: str, name: str, known: dict, where: str) -> str:
    return f"{kind} {name!r} in {where} is not defined (known: {', '.join(sorted(known)) or 'none'})"


def _is(value, types: tuple[type, ...]) -> bool:
    """isinstance, except that true/false is not a number."""
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


class Kind:
    """One kind of value. `types`: the Python types of the TOML values it takes (tests derive wrong values from it)."""

    types: tuple[type, ...] = ()
    required = False  # a missing key is read as None and checked, not replaced by the default

    def read(self, value, key: str, where: str, ctx: Context):
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Kind):
    """A string. `relative`: a path that is resolved against the matrix file's folder when it exists there."""

    relative: bool = False
    blank_is_none: bool = False
    message: str = "{key} = {value!r} must be a string"
    missing: str | None = None  # set: the key is required, and this is said when it is absent
    absent: str | None = None  # set: an absent key reads as this value (resolved like a written one)
    types = (str,)

    @property
    def required(self) -> bool:
        return self.missing is not None or self.absent is not None

    def read(self, value, key: str, where: str, ctx: Context):
        if value is None and self.missing:
            ctx.problems.append(f"{where}: {self.missing}")
            return None
        value = self.absent if value is None else value
        if not isinstance(value, str):
            ctx.problems.append(f"{where}: " + self.message.format(key=key, value=value, toml=toml(value)))
            return None
        if self.blank_is_none and not value:
            return None
        return resolve(ctx.base, value) if self.relative else value


@dataclass(frozen=True)
class Flag(Kind):
    types = (bool,)

    def read(self, value, key: str, where: str, ctx: Context):
        if not isinstance(value, bool):
            ctx.problems.append(f"{where}: {key} = {value!r} must be true or false")
            return None
        return value


@dataclass(frozen=True)
class Choice(Kind):
    """One of `choices`; `said` is how the message lists them (default: 'one of a, b, c')."""

    choices: tuple[str, ...]
    said: str = ""
    hint: str = ""
    required: bool = False
    types = (str,)

    def read(self, value, key: str, where: str, ctx: Context):
        if value not in self.choices:
            said = self.said or f"one of {', '.join(self.choices)}"
            ctx.problems.append(f"{where}: {key} = {value!r} must be {said}{self.hint}")
            return None
        return value


@dataclass(frozen=True)
class Number(Kind):
    """A number in [lo, hi] (whole numbers accepted), kept as written or converted by `to`."""

    lo: float = 0.0
    hi: float = 1.0
    to: type | None = None
    types = (int, float)

    def read(self, value, key: str, where: str, ctx: Context):
        if not _is(value, self.types) or not self.lo <= value <= self.hi:
            ctx.problems.append(f"{where}: {key} = {toml(value)} must be a number in [{self.lo:g}, {self.hi:g}]")
            return None
        return self.to(value) if self.to else value


@dataclass(frozen=True)
class Count(Kind):
    """A whole number of at least 1."""

    lo = 1
    types = (int,)

    def read(self, value, key: str, where: str, ctx: Context):
        if not _is(value, self.types) or value < self.lo:
            ctx.problems.append(f"{where}: {key} = {toml(value)} must be a whole number of at least 1")
            return None
        return value


@dataclass(frozen=True)
class Names(Kind):
    """A list of names, kept as a tuple."""

    example: str
    types = (list,)

    def read(self, value, key: str, where: str, ctx: Context):
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            ctx.problems.append(f"{where}: {key} = {value!r} must be a list of names, e.g. {self.example}")
            return None
        return tuple(value)


@dataclass(frozen=True)
class Counts(Kind):
    """A non-empty list of whole numbers of at least 1, kept sorted without repeats."""

    lo = 1
    types = (list,)

    def read(self, value, key: str, where: str, ctx: Context):
        if not (isinstance(value, list) and value and all(_is(b, (int,)) and b >= self.lo for b in value)):
            ctx.problems.append(f"{where}: {key} = {value!r} must be a list of whole numbers of at least 1, "
                                "e.g. [1, 8, 32]")
            return None
        return tuple(sorted(set(value)))


@dataclass(frozen=True)
class Workers(Kind):
    """"auto" (None) or a whole number of DataLoader workers from 0 to `hi`."""

    hi: int
    lo = 0
    types = (int,)

    def read(self, value, key: str, where: str, ctx: Context):
        if value == "auto":
            return None
        if not _is(value, self.types) or not self.lo <= value <= self.hi:
            ctx.problems.append(f"{where}: {key} = {value!r} must be \"auto\" or a whole number from 0 to "
                                f"{self.hi} (0: images are decoded in the main process)")
            return None
        return value
