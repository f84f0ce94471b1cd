"""LLaVA answer sanity: accuracy per question kind, POPE-style yes/no probes, and stable generation.

Answers are generated once per (model, question set) in the session and shared by these tests.
"""

import numpy as np
import pytest

from mmtests.evaluation.answers import (
    distinct_n,
    majority_baseline,
    matches,
    mentions,
    parse_yes_no,
    repeated_ngram_ratio,
    yes_no_metrics,
)

pytestmark = pytest.mark.llava


def _answered(mm, model, qset_name, test_id, suite):
    bench = mm.workbench.vlm
    answers = mm.available(bench.answers, model, qset_name, test_id=test_id, suite=suite)
    return bench.questions(qset_name), answers


def correct(qa, prediction: str, synonyms: dict) -> bool:
    """Scoring by kind: yes/no with LLaVA's POPE parser; a description must name the object it is about;
    everything else is a normalized exact match."""
    if qa.kind == "pope":
        return parse_yes_no(prediction) == qa.answer
    if qa.kind == "describe":
        return mentions(prediction, qa.about or qa.answer, synonyms)
    return matches(prediction, qa.answer, synonyms)


def test_answer_accuracy(answer_case, mm):
    check, kind, threshold = answer_case
    test_id = f"{check.id}/{kind}"
    qset = mm.matrix.question_sets[check.question_set]
    synonyms = dict(qset.synonyms)
    questions, answers = _answered(mm, check.model, check.question_set, test_id, "vlm_answers")
    pairs = [(q.qa, a.text) for q, a in zip(questions, answers, strict=True) if q.qa.kind == kind]
    if not pairs:
        pytest.skip(f"question set {check.question_set!r} has no {kind!r} questions")
    hits = [correct(qa, text, synonyms) for qa, text in pairs]
    accuracy = float(np.mean(hits))
    baseline = majority_baseline([qa.answer for qa, _ in pairs], synonyms) if kind != "describe" else None
    examples = [{"question": qa.question, "expected": qa.answer, "answer": text} for qa, text in pairs[:3]]
    mm.records.figure(suite="vlm_answers", test_id=test_id, metric="accuracy", value=accuracy, threshold=threshold,
                      model=check.model, question_set=check.question_set, question_kind=kind, n=len(pairs),
                      majority_baseline=baseline, examples=examples)
    if threshold is None:
        pytest.skip(f"{kind} accuracy {accuracy:.3f}: no threshold in the matrix, so measured and reported only")
    wrong = [f"{qa.question!r} -> {text!r} (expected {qa.answer!r})" for (qa, text), h in zip(pairs, hits, strict=True)
             if not h][:3]
    assert accuracy >= threshold, f"{test_id}: accuracy {accuracy:.3f} < {threshold}; e.g. {'; '.join(wrong)}"


def test_pope(pope_case, mm):
    check, pope_set = pope_case
    test_id = f"{check.id}/{pope_set}"
    questions, answers = _answered(mm, check.model, check.question_set, test_id, "pope")
    pairs = [(q.qa, a.text) for q, a in zip(questions, answers, strict=True)
             if q.qa.kind == "pope" and pope_set in ("all", q.qa.pope)]
    if not pairs:
        pytest.skip(f"question set {check.question_set!r} has no yes/no questions in POPE set {pope_set!r}")
    m = yes_no_metrics([t for _, t in pairs], [qa.answer for qa, _ in pairs])
    gap = abs(m.yes_ratio - m.true_yes_ratio)
    where = dict(suite="pope", test_id=test_id, model=check.model, question_set=check.question_set, pope_set=pope_set)
    for metric in ("accuracy", "precision", "recall"):
        mm.records.figure(metric=metric, value=getattr(m, metric), n=m.n, **where)
    mm.records.figure(metric="f1", value=m.f1, threshold=check.min_f1, n=m.n, **where)
    gap_ok = check.max_yes_ratio_gap is None or gap <= check.max_yes_ratio_gap
    mm.records.figure(metric="yes_ratio", value=m.yes_ratio, true_yes_ratio=m.true_yes_ratio,
                      max_gap=check.max_yes_ratio_gap,
                      outcome="measured" if check.max_yes_ratio_gap is None else "pass" if gap_ok else "fail", **where)
    if check.min_f1 is None and check.max_yes_ratio_gap is None:
        pytest.skip(f"F1 {m.f1:.3f}, yes-ratio {m.yes_ratio:.2f}: no thresholds, measured and reported only")
    problems = []
    if check.min_f1 is not None and m.f1 < check.min_f1:
        problems.append(f"F1 {m.f1:.3f} < {check.min_f1}")
    if not gap_ok:
        problems.append(f"yes-ratio {m.yes_ratio:.2f} is {gap:.2f} away from the true {m.true_yes_ratio:.2f} "
                        f"(max {check.max_yes_ratio_gap})")
    assert not problems, f"{test_id}: " + "; ".join(problems)


def _differ(mm, check, first, second, metric: str):
    questions = mm.workbench.vlm.questions(check.question_set)
    differ = [(questions[i].qa.question, a.text, b.text) for i, a, b in first_second(first, second) if a.tokens != b.tokens]
    n = len(second[0])
    mm.records.figure(suite="vlm_stability", test_id=check.id, metric=metric, value=1 - len(differ) / n, threshold=1.0,
                      model=check.model, question_set=check.question_set, n=n)
    return differ


def first_second(first, second):
    (idx_a, a), (idx_b, b) = first, second
    by_index = dict(zip(idx_a, a, strict=True))
    return [(i, by_index[i], g) for i, g in zip(idx_b, b, strict=True)]


def test_greedy_is_deterministic(stability_check, mm):
    """A sample of the questions, generated twice in the same batches: identical tokens."""
    c = stability_check
    bench = mm.workbench.vlm
    mm.available(bench.answers, c.model, c.question_set, test_id=c.id, suite="vlm_stability")
    runs = [bench.rerun(c.model, c.question_set, c.single_sample, bench.batch_size(), r) for r in (0, 1)]
    differ = _differ(mm, c, runs[0], runs[1], "same_answer_twice")
    assert not differ, f"{len(differ)} answers changed between two greedy runs, e.g. {differ[:2]}"


def test_batched_equals_one_at_a_time(stability_check, mm):
    """Batched (padded) generation gives the answers of one-at-a-time generation: catches padding bugs."""
    c = stability_check
    bench = mm.workbench.vlm
    questions, answers = _answered(mm, c.model, c.question_set, c.id, "vlm_stability")
    single = bench.rerun(c.model, c.question_set, c.single_sample, 1)
    differ = _differ(mm, c, (list(range(len(answers))), answers), single, "batched_equals_single")
    assert not differ, (f"{len(differ)} answers differ between batched and one-at-a-time generation "
                        f"(padding side {mm.matrix.models[stability_check.model].padding_side!r}), e.g. {differ[:2]}")


def test_answers_well_formed(stability_check, mm):
    """Non-empty, ended by EOS within max_new_tokens, and no loops (repeated bigrams)."""
    c = stability_check
    _, answers = _answered(mm, c.model, c.question_set, c.id, "vlm_stability")
    empty = sum(not a.text for a in answers)
    finished = float(np.mean([a.finished for a in answers]))
    repeats = [repeated_ngram_ratio(a.tokens, 2) for a in answers]
    where = dict(suite="vlm_stability", test_id=c.id, model=c.model, question_set=c.question_set, n=len(answers))
    mm.records.figure(metric="non_empty", value=1 - empty / len(answers), threshold=1.0, **where)
    mm.records.figure(metric="finished", value=finished, threshold=c.min_finished, **where)
    worst = max(repeats)
    describe = [a.text for a, q in zip(answers, mm.workbench.vlm.questions(c.question_set), strict=True)
                if q.qa.kind == "describe"]
    if describe:  # reported: how varied free descriptions are across images (one stuck answer scores low)
        mm.records.figure(metric="distinct_2_describe", value=distinct_n(describe, 2), **{**where, "n": len(describe)})
    mm.records.figure(metric="max_repeated_bigrams", value=worst, max_allowed=c.max_repeated_ngram,
                      outcome="pass" if worst <= c.max_repeated_ngram else "fail", **where)
    problems = []
    if empty:
        problems.append(f"{empty} empty answers")
    if finished < c.min_finished:
        problems.append(f"only {finished:.2f} of answers end with EOS (min {c.min_finished})")
    if worst > c.max_repeated_ngram:
        loop = answers[int(np.argmax(repeats))].text
        problems.append(f"an answer repeats {worst:.2f} of its bigrams (max {c.max_repeated_ngram}): {loop[:80]!r}")
    assert not problems, f"{c.id}: " + "; ".join(problems)
