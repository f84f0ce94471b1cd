"""LLaVA answer sanity: accuracy per question kind and POPE-style yes/no probes, each against its floor
and, question by question, against the model's known-good baseline; stable generation.

Answers are generated once per (model, question set) in the session and shared by these tests.
"""

import numpy as np
import pytest

from mmtests.evaluation.answers import (
    always_yes_f1,
    distinct_n,
    majority_baseline,
    repeated_ngram_ratio,
    yes_no_metrics,
)
from mmtests.figures import gates
from mmtests.figures.baseline_store import digest
from mmtests.figures.check import Check, judged, measured

pytestmark = pytest.mark.llava


def _answered(mm, model, qset_name, test_id, suite):
    """Questions, answers and per-question correctness; the per-question outcomes are logged (and kept
    for --mm-save-baseline), and returned with the baseline's when the model has one."""
    vlms = mm.vlms
    answers = mm.available(vlms.answers, model, qset_name, test_id=test_id, suite=suite)
    questions = vlms.questions(qset_name)
    key = f"answers/{qset_name}"
    truth = digest([[q.qa.kind, q.qa.question, q.qa.answer] for q in questions])
    mine = {"digest": truth, "text": [a.text for a in answers], "correct": vlms.correct(model, qset_name),
            "kind": [q.qa.kind for q in questions]}
    mm.samples(model, key, mine)
    baseline = mm.available(mm.baseline, model, test_id=test_id, suite=suite)
    base = mm.available(baseline.entry, key, model, truth, test_id=test_id, suite=suite) if baseline else None
    return questions, answers, mine, base, baseline


def _asked(mm, qset_name) -> dict:
    """The record fields that say how the questions were asked: the set's prompt suffix, where it has one."""
    suffix = mm.matrix.question_sets[qset_name].prompt_suffix
    return {"prompt_suffix": suffix} if suffix else {}


def _baseline_gate(mm, model, metric, mine, base, keep):
    """Paired accuracy against the baseline on the questions `keep` selects, or None without a baseline."""
    if base is None:
        return None
    idx = [i for i in range(len(mine["correct"])) if keep(i)]
    names = [f"q{i} {mine['text'][i]!r}" for i in idx]
    return gates.accuracy_gate(metric, [base["correct"][i] for i in idx], [mine["correct"][i] for i in idx],
                           mm.tolerances(model), names)


def test_answer_accuracy(answer_case, mm, request):
    check, kind, threshold = answer_case
    test_id = f"{check.id}/{kind}"
    synonyms = dict(mm.matrix.question_sets[check.question_set].synonyms)
    questions, answers, mine, base, _ = _answered(mm, check.model, check.question_set, test_id, "vlm_answers")
    idx = [i for i, q in enumerate(questions) if q.qa.kind == kind]
    if not idx:
        pytest.skip(f"question set {check.question_set!r} has no {kind!r} questions")
    accuracy = float(np.mean([mine["correct"][i] for i in idx]))
    majority = majority_baseline([questions[i].qa.answer for i in idx], synonyms) if kind != "describe" else None
    wrong = [f"{questions[i].qa.question!r} -> {answers[i].text!r} (expected {questions[i].qa.answer!r})"
             for i in idx if not mine["correct"][i]][:3]
    floor = judged("accuracy", accuracy, threshold, trivial=majority, explain=f"e.g. {'; '.join(wrong)}" if wrong else "",
                     fields={"n": len(idx), "majority_baseline": majority,
                             "examples": [{"question": questions[i].qa.question, "expected": questions[i].qa.answer,
                                           "answer": answers[i].text} for i in idx[:3]]})
    checks = [floor, _baseline_gate(mm, check.model, "accuracy_vs_baseline", mine, base, lambda i: i in set(idx))]
    mm.judge(request, [c for c in checks if c], suite="vlm_answers", test_id=test_id, model=check.model,
             question_set=check.question_set, question_kind=kind, **_asked(mm, check.question_set))


def test_answers_match_baseline(answers_check, mm, request):
    """Question by question, the model answers as its known-good self, and its first answer token's
    distribution on a probe sample stays within a KL tolerance measured on clean reruns."""
    c = answers_check
    vlms = mm.vlms
    _, _, mine, base, baseline = _answered(mm, c.model, c.question_set, c.id, "vlm_answers")
    idx, logprobs = vlms.probe_logprobs(c.model, c.question_set)
    key = f"first_token_logprobs/{c.question_set}"
    mm.fingerprint(c.model, key, logprobs)
    where = dict(suite="vlm_answers", test_id=c.id, model=c.model, question_set=c.question_set,
                 **_asked(mm, c.question_set))
    if base is None:
        why = "recording the baseline" if mm.saving else "the model entry names no baseline"
        mm.judge(request, [measured("answer_agreement", None, explain=why)], **where)
        return
    tol = mm.tolerances(c.model)
    names = [f"q{i}" for i in range(len(mine["text"]))]
    checks = [gates.agreement_gate("answer_agreement", base["text"], mine["text"], tol, names, "answers"),
              gates.kl_gate("first_token_kl", baseline.array(key), logprobs, tol, [f"q{i}" for i in idx])]
    mm.judge(request, checks, **where, precision=vlms.precision(c.model))


def test_pope(pope_case, mm, request):
    check, pope_set = pope_case
    test_id = f"{check.id}/{pope_set}"
    questions, answers, mine, base, _ = _answered(mm, check.model, check.question_set, test_id, "pope")
    idx = [i for i, q in enumerate(questions) if q.qa.kind == "pope" and pope_set in ("all", q.qa.pope)]
    if not idx:
        pytest.skip(f"question set {check.question_set!r} has no yes/no questions in POPE set {pope_set!r}")
    m = yes_no_metrics([answers[i].text for i in idx], [questions[i].qa.answer for i in idx])
    yes_f1 = always_yes_f1(m.true_yes_ratio)
    gap = abs(m.yes_ratio - m.true_yes_ratio)
    f1 = judged("f1", m.f1, check.min_f1, trivial=yes_f1, fields={"n": m.n, "always_yes_f1": yes_f1})
    checks: list[Check | None] = [
        measured("accuracy", m.accuracy), measured("precision", m.precision), measured("recall", m.recall), f1,
        judged("yes_ratio_gap", gap, check.max_yes_ratio_gap,
                explain=f"yes-ratio of the predictions {m.yes_ratio:.2f}, of the truth {m.true_yes_ratio:.2f}",
                fields={"yes_ratio": m.yes_ratio, "true_yes_ratio": m.true_yes_ratio}),
        _baseline_gate(mm, check.model, "accuracy_vs_baseline", mine, base, lambda i: i in set(idx)),
    ]
    mm.judge(request, [c for c in checks if c], suite="pope", test_id=test_id, model=check.model,
             question_set=check.question_set, pope_set=pope_set, **_asked(mm, check.question_set))


def _agreement(mm, check, first, second, metric: str) -> Check:
    questions = mm.vlms.questions(check.question_set)
    (idx_a, a), (idx_b, b) = first, second
    by_index = dict(zip(idx_a, a, strict=True))
    differ = [(questions[i].qa.question, by_index[i].text, g.text) for i, g in zip(idx_b, b, strict=True)
              if by_index[i].tokens != g.tokens]
    n = len(b)
    return judged(metric, 1 - len(differ) / n, 1.0, fields={"n": n},
                    explain=f"{len(differ)} of {n} answers differ, e.g. {differ[:2]}" if differ else "")


def _stability(mm, request, c, checks):
    mm.judge(request, checks, suite="vlm_stability", test_id=c.id, model=c.model, question_set=c.question_set)


def test_greedy_is_deterministic(stability_check, mm, request):
    """A sample of the questions, generated twice in the same batches: identical tokens."""
    c = stability_check
    vlms = mm.vlms
    mm.available(vlms.answers, c.model, c.question_set, test_id=c.id, suite="vlm_stability")
    runs = [vlms.rerun(c.model, c.question_set, c.single_sample, vlms.batch_size, r) for r in (0, 1)]
    _stability(mm, request, c, [_agreement(mm, c, runs[0], runs[1], "same_answer_twice")])


def test_batched_equals_one_at_a_time(stability_check, mm, request):
    """Batched (padded) generation gives the answers of one-at-a-time generation: catches padding bugs."""
    c = stability_check
    vlms = mm.vlms
    answers = mm.available(vlms.answers, c.model, c.question_set, test_id=c.id, suite="vlm_stability")
    single = vlms.rerun(c.model, c.question_set, c.single_sample, 1)
    check = _agreement(mm, c, (list(range(len(answers))), answers), single, "batched_equals_single")
    check.explain += f" (padding side {mm.matrix.models[c.model].padding_side!r})" if check.explain else ""
    _stability(mm, request, c, [check])


def test_answers_well_formed(stability_check, mm, request):
    """Non-empty, ended by EOS within max_new_tokens, and no loops (repeated bigrams)."""
    c = stability_check
    vlms = mm.vlms
    answers = mm.available(vlms.answers, c.model, c.question_set, test_id=c.id, suite="vlm_stability")
    repeats = [repeated_ngram_ratio(a.tokens, 2) for a in answers]
    worst = int(np.argmax(repeats))
    describe = [a.text for a, q in zip(answers, vlms.questions(c.question_set), strict=True) if q.qa.kind == "describe"]
    checks = [
        judged("non_empty", 1 - sum(not a.text for a in answers) / len(answers), 1.0, fields={"n": len(answers)}),
        judged("finished", float(np.mean([a.finished for a in answers])), c.min_finished,
                 explain="share of answers that end with EOS within max_new_tokens"),
        judged("max_repeated_bigrams", repeats[worst], c.max_repeated_ngram,
                explain=f"worst answer: {answers[worst].text[:80]!r}"),
    ]
    if describe:  # how varied free descriptions are across images (one stuck answer scores low)
        checks.append(measured("distinct_2_describe", distinct_n(describe, 2), fields={"n": len(describe)}))
    _stability(mm, request, c, checks)

