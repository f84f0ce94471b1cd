"""Scoring generated answers: normalized match, POPE-style yes/no, and degenerate-output checks.

Plain functions on strings and lists, so each rule can be unit-tested by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str, synonyms: Mapping[str, str] | None = None) -> str:
    """Lower-case, drop punctuation and articles, collapse spaces, map synonyms (word or phrase)."""
    words = [w for w in _PUNCT.sub(" ", text.lower()).split() if w not in ARTICLES]
    text = " ".join(words)
    for src, dst in sorted((synonyms or {}).items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"\b{re.escape(normalize(src))}\b", normalize(dst), text)
    return text


def matches(prediction: str, answer: str, synonyms: Mapping[str, str] | None = None) -> bool:
    """Normalized exact match: 'The Circle.' matches 'circle'; 'a red circle' does not match 'circle'."""
    return normalize(prediction, synonyms) == normalize(answer, synonyms)


def mentions(prediction: str, phrase: str, synonyms: Mapping[str, str] | None = None) -> bool:
    """Whether the normalized prediction contains the normalized phrase as whole words."""
    return re.search(rf"\b{re.escape(normalize(phrase, synonyms))}\b", normalize(prediction, synonyms)) is not None


def parse_yes_no(text: str) -> str:
    """LLaVA's POPE rule: look at the first sentence only; 'no' or 'not' in it means no, else yes."""
    first = text.split(".")[0].replace(",", " ").lower()
    words = first.split()
    return "no" if "no" in words or "not" in words else "yes"


@dataclass(frozen=True)
class YesNoMetrics:
    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float  # fraction of *predictions* that are yes
    true_yes_ratio: float  # fraction of ground-truth answers that are yes
    n: int


def yes_no_metrics(predictions: Sequence[str], answers: Sequence[str]) -> YesNoMetrics:
    """POPE metrics with "yes" as the positive class; predictions are parsed with `parse_yes_no`."""
    if len(predictions) != len(answers) or not answers:
        raise ValueError(f"need as many predictions as answers, and at least one ({len(predictions)} vs {len(answers)})")
    pred = [parse_yes_no(p) == "yes" for p in predictions]
    true = [a.strip().lower() == "yes" for a in answers]
    tp = sum(p and t for p, t in zip(pred, true, strict=True))
    fp = sum(p and not t for p, t in zip(pred, true, strict=True))
    fn = sum(t and not p for p, t in zip(pred, true, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = sum(p == t for p, t in zip(pred, true, strict=True)) / len(true)
    return YesNoMetrics(accuracy, precision, recall, f1, sum(pred) / len(pred), sum(true) / len(true), len(true))


def repeated_ngram_ratio(tokens: Sequence, n: int = 2) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same answer (0 = none, near 1 = a loop)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 0.0 if not grams else 1 - len(set(grams)) / len(grams)


def distinct_n(texts: Sequence[str], n: int = 1) -> float:
    """Distinct n-grams over all n-grams across answers (Li et al. 2016); a model stuck on one answer scores low."""
    grams = [tuple(ws[i:i + n]) for t in texts for ws in [t.split()] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def majority_baseline(answers: Sequence[str], synonyms: Mapping[str, str] | None = None) -> float:
    """Accuracy of always giving the most frequent answer: what a model blind to the image can reach."""
    if not answers:
        return 0.0
    counts: dict[str, int] = {}
    for a in answers:
        key = normalize(a, synonyms)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values()) / len(answers)


def always_yes_f1(true_yes_ratio: float) -> float:
    """F1 of a model that answers "yes" to every question (precision = the true-yes ratio, recall 1):
    the floor a POPE gate must beat."""
    p = true_yes_ratio
    return 2 * p / (1 + p) if p else 0.0


def is_correct(kind: str, expected: str, about: str | None, prediction: str, synonyms: Mapping[str, str]) -> bool:
    """Scoring by question kind: yes/no with LLaVA's POPE parser; a description must name the object it
    is about; everything else is a normalized exact match."""
    if kind == "pope":
        return parse_yes_no(prediction) == expected
    if kind == "describe":
        return mentions(prediction, about or expected, synonyms)
    return matches(prediction, expected, synonyms)
