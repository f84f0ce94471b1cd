"""The report's 95% intervals."""

import pytest

from mmtests.figures.intervals import figure_interval, wilson


def test_wilson_matches_the_published_values():
    # Newcombe (1998), table I: 81/263 -> 0.2553 to 0.3662; 0/10 -> 0 to 0.2775
    assert wilson(81 / 263, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson(0.0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(1.0, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_a_gain_takes_its_stderr_and_a_figure_without_n_has_no_interval():
    assert figure_interval({"value": 0.015, "stderr": 0.005}) == pytest.approx((0.0052, 0.0248), abs=1e-4)
    assert figure_interval({"value": 0.9}) is None
    assert figure_interval({"value": 0.9, "n": 0}) is None
    lo, hi = figure_interval({"value": 0.9, "n": 2000})
    assert lo < 0.9 < hi and hi - lo == pytest.approx(0.0263, abs=5e-4)
