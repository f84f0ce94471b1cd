"""Progress of the session's long steps (checking a dataset's images, embedding them, generating answers), written
through pytest's terminal writer so that it shows under pytest's default output capture.

The session caches know no pytest: they call a plain function `progress(task, done, total, unit)`; this module
turns those calls into terminal lines. Nothing is written for a step that ends within its first second. After
that: on a terminal one line rewritten in place at most once a second; elsewhere (a CI log) a line every 15 s; and
a last line with the count, the time and the rate when the step ends. Silent with `-qq` and on xdist workers
(their output never reaches the terminal).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

FIRST_AFTER_S = 1.0  # a step that ends sooner prints nothing
TTY_EVERY_S = 1.0  # a rewritten line at most this often
LOG_EVERY_S = 15.0  # a new line at most this often where the output is not a terminal


@dataclass
class _Step:
    started: float
    shown_at: float | None = None  # when a line was last written for it (None: never)
    width: int = 0  # of the line last written in place, which the next one covers


def rate_text(done: int, elapsed: float, unit: str) -> str:
    """'123.4 images/s' (the rate of a step so far; '-' before any time has passed)."""
    return f"{done / elapsed:,.1f} {unit}/s" if elapsed > 0 else f"- {unit}/s"


class TerminalProgress:
    """A `progress(task, done, total, unit)` callback that writes to a terminal-writer-like object.

    `writer` needs `write(text)` and `line(text)`; `isatty` says whether lines may be rewritten in place.
    `before_first` is called before a step's first line (pytest: end the dots line); `guard` wraps every write
    (pytest: suspend output capture)."""

    def __init__(self, writer, isatty: bool, clock: Callable[[], float] = time.monotonic,
                 before_first: Callable[[], None] = lambda: None, guard=contextlib.nullcontext):
        self.writer, self.isatty, self.clock = writer, isatty, clock
        self.before_first, self.guard = before_first, guard
        self._steps: dict[str, _Step] = {}

    def __call__(self, task: str, done: int, total: int, unit: str) -> None:
        now = self.clock()
        step = self._steps.setdefault(task, _Step(now))
        elapsed = now - step.started
        finished = done >= total
        if finished:
            del self._steps[task]
        if step.shown_at is None:
            if elapsed < FIRST_AFTER_S:
                return
        elif not finished and now - step.shown_at < (TTY_EVERY_S if self.isatty else LOG_EVERY_S):
            return
        text = f"{task}: {done:,}/{total:,} {unit} ({done / total:.0%}), {rate_text(done, elapsed, unit)}" if total \
            else f"{task}: {done:,} {unit}"
        if finished:
            text = f"{task}: {done:,} {unit} in {elapsed:.1f} s, {rate_text(done, elapsed, unit)}"
        with self.guard():
            if step.shown_at is None:
                self.before_first()
            if self.isatty:
                # Rewritten in place (padded over the longer line before it); the last one stays, ended by a newline.
                self.writer.write("\r" + text.ljust(step.width), flush=True)
                step.width = len(text)
                if finished:
                    self.writer.line()
            else:
                self.writer.line(text)
        step.shown_at = now


def silent(task: str, done: int, total: int, unit: str) -> None:
    """The progress callback that shows nothing."""


def for_pytest(config) -> Callable[[str, int, int, str], None]:
    """The session's progress callback: through pytest's terminal reporter, capture suspended while it writes;
    `silent` with -qq, on an xdist worker, or without a terminal reporter."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or config.get_verbosity() <= -2 or hasattr(config, "workerinput"):
        return silent
    capture = config.pluginmanager.get_plugin("capturemanager")
    writer = reporter._tw  # the writer pytest's own progress goes through (config.get_terminal_writer() is the same)
    guard = capture.global_and_fixture_disabled if capture is not None else contextlib.nullcontext
    stream = getattr(writer, "_file", None)
    isatty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    return TerminalProgress(writer, isatty, before_first=reporter.ensure_newline, guard=guard)
