"""Progress of the session's long steps: throttled, with rates, and visible under pytest's default capture."""

from __future__ import annotations

import pytest

from mmtests.progress import TerminalProgress


class FakeWriter:
    def __init__(self):
        self.out = ""

    def write(self, text, flush=False):
        self.out += text

    def line(self, text=""):
        self.out += text + "\n"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _run(isatty: bool, times: list[float], total: int = 1000) -> str:
    """A step of `total` items, 100 done at each of the given seconds after its start."""
    writer, clock = FakeWriter(), Clock()
    progress = TerminalProgress(writer, isatty, clock)
    progress("embedding d with m", 0, total, "images")
    start = clock.now
    for i, t in enumerate(times, 1):
        clock.now = start + t
        progress("embedding d with m", min(total, 100 * i), total, "images")
    return writer.out


def test_a_step_that_ends_within_a_second_prints_nothing():
    assert _run(True, [0.09 * i for i in range(1, 11)]) == ""
    assert _run(False, [0.09 * i for i in range(1, 11)]) == ""


def test_a_step_of_one_long_update_still_says_its_rate():
    assert _run(False, [3.0], total=100) == "embedding d with m: 100 images in 3.0 s, 33.3 images/s\n"


def test_a_long_step_on_a_terminal_is_one_line_rewritten_at_most_once_a_second():
    out = _run(True, [0.5 * i for i in range(1, 11)])  # 10 updates over 5 s
    assert out.count("\r") == 5  # at 1, 2, 3, 4 s and the end, not at every update
    assert out.count("\n") == 1  # the last line stays
    last = out.rpartition("\r")[2]
    assert last.startswith("embedding d with m: 1,000 images in 5.0 s, 200.0 images/s")
    assert "images/s" in out.split("\r")[1] and "(20%)" in out.split("\r")[1]


def test_a_long_step_in_a_log_is_a_few_lines():
    out = _run(False, [4.0 * i for i in range(1, 11)])  # 40 s
    lines = out.splitlines()
    assert "\r" not in out
    # the first after a second, then every 15 s, and the end
    assert lines == ["embedding d with m: 100/1,000 images (10%), 25.0 images/s",
                     "embedding d with m: 500/1,000 images (50%), 25.0 images/s",
                     "embedding d with m: 900/1,000 images (90%), 25.0 images/s",
                     "embedding d with m: 1,000 images in 40.0 s, 25.0 images/s"]


def test_steps_are_apart_and_a_step_is_new_again_after_it_ended():
    writer, clock = FakeWriter(), Clock()
    progress = TerminalProgress(writer, False, clock)
    progress("a", 0, 10, "images")
    progress("b", 0, 10, "questions")
    clock.now += 2
    progress("a", 10, 10, "images")
    progress("b", 5, 10, "questions")
    assert writer.out.splitlines() == ["a: 10 images in 2.0 s, 5.0 images/s", "b: 5/10 questions (50%), 2.5 questions/s"]
    progress("a", 0, 10, "images")  # the same task again (another model): timed from now
    clock.now += 0.5
    progress("a", 10, 10, "images")
    assert len(writer.out.splitlines()) == 2


_SLOW_STEP = """
import time
import mmtests.progress
from mmtests.progress import for_pytest

mmtests.progress.FIRST_AFTER_S = 0.05  # a short step stands for a long one

def test_long_step(request):
    progress = for_pytest(request.config)
    progress("embedding big with m", 0, 3, "images")
    for i in range(1, 4):
        time.sleep(0.1)
        progress("embedding big with m", i, 3, "images")
"""


@pytest.mark.parametrize("args", [(), ("-v",)])
def test_progress_shows_under_default_capture(pytester, args):
    pytester.makepyfile(test_slow=_SLOW_STEP)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r"embedding big with m: 3 images in 0\.\d s, \d+\.\d images/s"])


def test_progress_is_silent_with_qq(pytester):
    pytester.makepyfile(test_slow=_SLOW_STEP)
    result = pytester.runpytest("-p", "no:cacheprovider", "-qq")
    assert result.ret == 0
    assert "embedding big" not in result.stdout.str()
