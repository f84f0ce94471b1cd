"""Answer scoring rules, checked on hand-written answers."""

import pytest

from mmtests.evaluation.answers import (
    distinct_n,
    majority_baseline,
    matches,
    mentions,
    normalize,
    parse_yes_no,
    repeated_ngram_ratio,
    yes_no_metrics,
)

SYN = {"center": "centre", "middle": "centre", "gray": "grey"}


@pytest.mark.parametrize(("prediction", "answer", "expected"), [
    ("The Circle.", "circle", True),
    ("a red circle", "circle", False),
    ("top-left", "top left", True),
    ("Center", "centre", True),
    ("in the middle", "centre", False),  # "in" stays: exact match, not containment
    ("middle", "centre", True),
    ("gray", "grey", True),
    ("", "circle", False),
])
def test_normalized_match(prediction, answer, expected):
    assert matches(prediction, answer, SYN) is expected


def test_normalize_drops_articles_and_punctuation():
    assert normalize("  A big, RED star!  ") == "big red star"


def test_mentions_whole_words_only():
    assert mentions("a big red star in the top left.", "red star")
    assert not mentions("a big red starfish", "red star")


@pytest.mark.parametrize(("text", "expected"), [
    ("Yes", "yes"), ("yes, there is.", "yes"), ("No", "no"), ("There is not a red star.", "no"),
    ("Yes. No red star though.", "yes"),  # only the first sentence counts, as in LLaVA's POPE evaluator
    ("no, there isn't", "no"), ("I see a star", "yes"),
])
def test_pope_parser(text, expected):
    assert parse_yes_no(text) == expected


def test_yes_no_metrics_by_hand():
    # truth: y y n n; predictions: y n y n -> tp 1, fp 1, fn 1, tn 1
    m = yes_no_metrics(["yes", "no", "yes", "no"], ["yes", "yes", "no", "no"])
    assert (m.accuracy, m.precision, m.recall, m.f1, m.yes_ratio, m.true_yes_ratio) == (0.5, 0.5, 0.5, 0.5, 0.5, 0.5)


def test_always_yes_fails_on_the_prediction_yes_ratio():
    m = yes_no_metrics(["yes"] * 4, ["yes", "yes", "no", "no"])
    assert m.recall == 1.0 and m.precision == 0.5 and m.f1 == pytest.approx(2 / 3)
    assert m.yes_ratio == 1.0 and m.true_yes_ratio == 0.5


def test_yes_no_metrics_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="as many predictions as answers"):
        yes_no_metrics(["yes"], ["yes", "no"])


def test_repetition_and_distinct_n():
    assert repeated_ngram_ratio([1, 2, 3, 4]) == 0.0
    assert repeated_ngram_ratio([5, 5, 5, 5, 5]) == pytest.approx(3 / 4)
    assert distinct_n(["red", "red", "blue"]) == pytest.approx(2 / 3)
    assert majority_baseline(["a", "b", "b", "center", "centre"], SYN) == pytest.approx(2 / 5)
