"""Crashes are outcomes. Any exception in a check of mmtests' own (a test using the `mm` fixture) that is not one
of the expected ones (not available here, a broken entry, out of memory, records that cannot be written: each its
own one-line failure) is a crash: recorded as a figure of outcome "crashed" with the exception's class, its
one-line message and where it was raised (`errors.crash_site`), counted by the report and in the end line, and
the check fails.

A crash is shown once: the first check that meets it fails with its traceback; a later check that meets the same
exception (a remembered loader or measurement raises `CrashedEarlier`; a session fixture's error is raised again
by pytest), or one raised the same way (same class, message and place: the same fault met through another
measurement, e.g. the images of another dataset through the same broken encoder), fails with one line naming the
first check, and records a crashed figure that says so (`earlier`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from .errors import CrashedEarlier, crash_site, first_line
from .figures.check import CRASHED

# The suite of a check, by the matrix fixture that parametrizes it (its test id is that fixture's parameter id).
SUITES = {"zero_shot_check": "zero_shot", "gain_check": "prompt_gain", "stability_check": "vlm_stability",
          "attention_check": "attention", "answers_check": "vlm_answers", "answer_case": "vlm_answers",
          "pope_case": "pope"}
CRASH_PROPERTY = "mm_crash"  # user property of a crashed test's report: the crash, for the terminal summary
CRASHES_KEY = pytest.StashKey["Crashes"]()
FIRST, AGAIN, SAME_WAY = "first", "again", "same way"  # how a check met its crash (`Crashes.meet`)


@dataclass
class Crash:
    """One exception, as first met: which check met it, what it was and where it was raised."""

    first: str  # the check (test name with its parameters) that met it first
    error: str  # the exception's class
    message: str  # its first line
    site: dict  # origin, at, called_from (errors.crash_site)
    later: list[str] = field(default_factory=list)  # checks that failed on it afterwards

    def describe(self) -> str:
        """"RuntimeError in transformers (modeling_x.py:12 in forward; called from mmtests/...): message"."""
        where = ""
        if self.site.get("origin"):
            where = f" in {self.site['origin']} ({self.site['at']}"
            where += f"; called from {self.site['called_from']})" if self.site.get("called_from") else ")"
        return f"{self.error}{where}: {self.message}"


class Crashes:
    """The session's crashes, each exception once (by identity), in the order met."""

    def __init__(self) -> None:
        self._met: dict[int, tuple[BaseException, Crash]] = {}  # id(exception) -> (it, kept alive; its crash)
        self._ways: dict[tuple, Crash] = {}  # (class, message, place raised) -> its crash
        self.crashes: list[Crash] = []

    def meet(self, err: Exception, check: str) -> tuple[Crash, str]:
        """The crash `err` is, and how this check met it: FIRST, AGAIN (the exception an earlier check met) or
        SAME_WAY (another exception, raised as an earlier check's was)."""
        original = err.error if isinstance(err, CrashedEarlier) else err
        if id(original) in self._met:
            crash, how = self._met[id(original)][1], AGAIN
        else:
            first = (err.first or check) if isinstance(err, CrashedEarlier) else check
            new = Crash(first, original.__class__.__name__, first_line(original), crash_site(original))
            crash = self._ways.setdefault((new.error, new.message, new.site.get("at")), new)
            self._met[id(original)] = (original, crash)
            if crash is new:
                self.crashes.append(crash)
                if first == check:
                    return crash, FIRST
            how = SAME_WAY if crash is not new and not isinstance(err, CrashedEarlier) else AGAIN
        crash.later.append(check)
        return crash, how


def crashes_of(config: pytest.Config) -> Crashes:
    if CRASHES_KEY not in config.stash:
        config.stash[CRASHES_KEY] = Crashes()
    return config.stash[CRASHES_KEY]


def where_of(item: pytest.Item) -> dict:
    """The suite, test id and model of a check, from the matrix parameter it runs (a user's test of its own: the
    module's name and the test's name)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    fixture = next((f for f in SUITES if f in params), None)
    if fixture is None:
        return {"suite": item.module.__name__.rpartition(".")[2].removeprefix("test_") if getattr(item, "module", None)
                else "checks", "test_id": item.name}
    value = params[fixture]
    check = value[0] if isinstance(value, tuple) else value
    where = {"suite": SUITES[fixture], "test_id": item.callspec.id}
    if isinstance(getattr(check, "model", None), str):
        where["model"] = check.model
    return where


def record_crash(item: pytest.Item, err: Exception) -> str | None:
    """Record `err`, met by check `item`, as a crashed figure; the one-line failure message of a crash an earlier
    check met already, or None for a first one (to be shown with its traceback)."""
    from .runrecords import session_writer

    crash, how = crashes_of(item.config).meet(err, item.name)
    repeat = how != FIRST
    fields = {"error": crash.error, "message": crash.message, **crash.site, "check": item.name}
    if repeat:
        fields["earlier"] = crash.first
        said = "crashed earlier in" if how == AGAIN else "crashed as"
        reason = f"{said} {crash.first}: {crash.error}: {crash.message}"
    else:
        reason = crash.describe()
    item.user_properties.append((f"mm:{CRASHED}", None))
    item.user_properties.append((f"mm:{CRASHED}:verdict", CRASHED))
    item.user_properties.append((CRASH_PROPERTY, {"first": crash.first, "check": item.name, "text": crash.describe()}))
    try:
        session_writer(item.config).figure(**where_of(item), metric=CRASHED, value=None, outcome=CRASHED,
                                           reason=reason, **fields)
    except OSError as err:  # records that cannot be written: the crash is still shown, and so is this
        reason += f" (and not recorded: {err})"
    if repeat:
        return reason
    err.add_note(f"mmtests: recorded as a crash of {item.name}; later checks that need what crashed fail in one line")
    return None


def summary_lines(reports: list[dict]) -> list[str]:
    """Terminal summary: each crash once (what, where, the first check), and how many later checks failed on it."""
    by_text: dict[str, list[dict]] = {}
    for r in reports:
        by_text.setdefault(r["text"], []).append(r)
    lines = []
    for text, met in by_text.items():
        first = met[0]["first"]
        later = [r["check"] for r in met if r["check"] != first]
        lines.append(f"{text}\n  first in {first}" + (f"; {len(later)} later check(s) failed on it: "
                                                     f"{', '.join(later[:5])}{' ...' if len(later) > 5 else ''}"
                                                     if later else ""))
    return lines
