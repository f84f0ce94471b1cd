"""Metric functions against hand-computed cases."""

import math

import pytest
import torch

from mmtests.evaluation.zero_shot import (
    correct_at_k,
    paired_gain,
    per_class_recall,
    zero_shot_logits,
    zero_shot_metrics,
)

# 4 images, 3 classes; rows are logits. Predictions: 0, 2, 1, 1; labels: 0, 1, 1, 2.
LOGITS = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1]])
LABELS = torch.tensor([0, 1, 1, 2])


def test_correct_at_k_top1_and_top2():
    assert correct_at_k(LOGITS, LABELS, 1).tolist() == [True, False, True, False]
    # top-2 of row 1 is {2, 1} (label 1 in it); of row 3 is {1, 0} (label 2 not in it)
    assert correct_at_k(LOGITS, LABELS, 2).tolist() == [True, True, True, False]


def test_per_class_recall_counts_each_class_separately():
    assert per_class_recall(LOGITS, LABELS, ["a", "b", "c"]) == {"a": 1.0, "b": 0.5, "c": 0.0}


def test_per_class_recall_leaves_out_absent_classes():
    assert per_class_recall(LOGITS[:1], LABELS[:1], ["a", "b", "c"]) == {"a": 1.0}


def test_zero_shot_metrics_top1_mean_recall_and_no_top5_below_five_classes():
    m = zero_shot_metrics(LOGITS, LABELS, ["a", "b", "c"])
    assert m.top1 == pytest.approx(0.5)
    assert m.mean_per_class_recall == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert m.top5 is None
    assert m.n == 4


def test_top5_is_certain_when_the_label_is_fifth_best():
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    m = zero_shot_metrics(logits, torch.tensor([4]), list("abcdef"))
    assert (m.top1, m.top5) == (0.0, 1.0)


def test_zero_shot_metrics_rejects_mismatched_class_count():
    with pytest.raises(ValueError, match="do not match"):
        zero_shot_metrics(LOGITS, LABELS, ["a", "b"])


def test_zero_shot_logits_are_cosines():
    feats = torch.tensor([[3.0, 4.0]])  # normalised to (0.6, 0.8)
    classifier = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # D x C, already unit columns
    assert zero_shot_logits(feats, classifier)[0].tolist() == pytest.approx([0.6, 0.8])


def test_paired_gain_is_the_mean_paired_difference_with_its_standard_error():
    labels = torch.tensor([0, 0, 0, 0])
    base = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # right on 0 and 3
    cand = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # right on 0, 1 and 3
    g = paired_gain(cand, base, labels)
    assert (g.baseline, g.candidate, g.gain) == pytest.approx((0.5, 0.75, 0.25))
    # differences 0, 1, 0, 0: sample std 0.5, se 0.5 / sqrt(4)
    assert g.stderr == pytest.approx(0.25)
    assert not math.isnan(g.stderr)
