"""Checks and the gates against a baseline, on hand-computed cases."""

import math

import pytest
import torch

from mmtests.errors import EntryError
from mmtests.figures import baseline_store, gates
from mmtests.figures.check import FAIL, MEASURED, PASS, judged, measured
from mmtests.figures.paired import binomial_tail, paired_drop

TOL = gates.tolerances("float32")


def test_bounds_judge_in_their_direction():
    assert judged("top1", 0.8, 0.7).outcome == PASS
    assert judged("top1", 0.6, 0.7).outcome == FAIL
    assert judged("causal_leak", 0.0, 0.0).outcome == PASS
    assert judged("causal_leak", 1e-3, 0.0).outcome == FAIL
    assert judged("top1", 0.6, None).outcome == MEASURED
    assert measured("top5", 0.9).outcome == MEASURED
    assert "0.6 < 0.7" in judged("top1", 0.6, 0.7).describe()


def test_binomial_tail_is_the_exact_mcnemar_p_value():
    assert binomial_tail(0, 0) == 1.0
    assert binomial_tail(3, 3) == pytest.approx(1 / 8)
    assert binomial_tail(5, 6) == pytest.approx(7 / 64)
    assert binomial_tail(2, 4) == pytest.approx(11 / 16)


def test_paired_drop_counts_flips_both_ways():
    base = [True, True, True, False, False, True]
    cand = [True, False, False, True, False, True]
    d = paired_drop(base, cand)
    assert (d.lost, d.gained, d.n) == ([1, 2], [3], 6)
    assert d.drop == pytest.approx(1 / 6)
    assert d.p_value == pytest.approx(binomial_tail(2, 3))
    var = (3 / 6 - (1 / 6) ** 2) / 6
    assert d.ci == pytest.approx((1 / 6 - 1.96 * math.sqrt(var), 1 / 6 + 1.96 * math.sqrt(var)))


def test_accuracy_gate_is_red_only_when_worse_beyond_chance():
    names = [f"s{i}" for i in range(200)]
    same = [i % 3 != 0 for i in range(200)]
    assert gates.accuracy_gate("top1_vs_baseline", same, same, TOL, names).outcome == PASS
    one_lost = list(same)
    one_lost[1] = False  # a single flip is not evidence: p = 0.5
    assert gates.accuracy_gate("top1_vs_baseline", same, one_lost, TOL, names).outcome == PASS
    many_lost = [ok and i % 10 != 1 for i, ok in enumerate(same)]  # 14 lost (i = 1, 11, 31, ...), none gained
    check = gates.accuracy_gate("top1_vs_baseline", same, many_lost, TOL, names)
    assert check.outcome == FAIL and "14 samples lost, 0 gained" in check.explain and "p = 6.1e-05" in check.explain
    assert check.fields["flipped"][:3] == ["s1", "s11", "s31"]


def test_agreement_gate_names_what_changed():
    names = ["a", "b", "c", "d"]
    check = gates.agreement_gate("prediction_agreement", [0, 1, 2, 3], [0, 1, 5, 3], {"min_agreement": 0.9}, names, "classes")
    assert check.value == 0.75 and check.outcome == FAIL and "c: 2 -> 5" in check.explain
    assert gates.agreement_gate("prediction_agreement", [0, 1], [0, 1], {"min_agreement": 1.0}, names, "classes").outcome == PASS


def test_cosine_and_kl_gates():
    base = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    assert gates.cosine_gate("image_cosine", base, base.clone(), TOL, "probe").outcome == PASS
    moved = base + 0.05 * torch.randn(8, 16)
    assert gates.cosine_gate("image_cosine", base, moved, TOL, "probe").outcome == FAIL
    assert gates.cosine_gate("image_cosine", base, base[:4], TOL, "probe").outcome == FAIL  # another probe set
    logp = torch.log_softmax(torch.randn(5, 10), dim=-1)
    assert gates.kl_gate("first_token_kl", logp, logp.clone(), TOL, list("abcde")).value == pytest.approx(0.0, abs=1e-7)
    other = torch.log_softmax(torch.randn(5, 10), dim=-1)
    assert gates.kl_gate("first_token_kl", logp, other, TOL, list("abcde")).outcome == FAIL


def test_baseline_round_trip_and_changed_data_is_named(tmp_path):
    writer = baseline_store.BaselineWriter()
    writer.add("m", "zero_shot/d/p", {"digest": "abc", "predicted": [1, 2], "probability": [0.9, 0.5],
                                      "correct": [True, False]})
    writer.add_array("m", "image/d", torch.ones(2, 3))
    writer.write("m", tmp_path / "m", {"device": "cpu"})
    loaded = baseline_store.Baseline.load(tmp_path / "m", "m")
    assert loaded.entry("zero_shot/d/p", "m", "abc")["predicted"] == [1, 2]
    assert torch.equal(loaded.arrays["image/d"], torch.ones(2, 3))
    with pytest.raises(EntryError, match="not those of its baseline"):
        loaded.entry("zero_shot/d/p", "m", "other")
    with pytest.raises(EntryError, match="has no outcomes for 'zero_shot/d/q'"):
        loaded.entry("zero_shot/d/q", "m", "abc")
    # A second session updates what it measured and keeps the rest, like a snapshot update.
    again = baseline_store.BaselineWriter()
    again.add("m", "answers/q", {"digest": "x", "text": ["red"], "correct": [True], "kind": ["colour"]})
    again.write("m", tmp_path / "m", {"device": "cpu"})
    assert set(baseline_store.Baseline.load(tmp_path / "m", "m").samples) == {"zero_shot/d/p", "answers/q"}


def test_missing_baseline_says_how_to_record_it(tmp_path):
    with pytest.raises(EntryError, match="--mm-save-baseline"):
        baseline_store.Baseline.load(tmp_path / "nothing", "m")
