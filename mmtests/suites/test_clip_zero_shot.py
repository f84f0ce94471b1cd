"""CLIP zero-shot suites: accuracy per (model, dataset, prompt set), and prompt-engineering gains."""

import pytest

pytestmark = pytest.mark.clip


def test_zero_shot_top1(zero_shot_check, mm):
    c = zero_shot_check
    metrics = mm.available(mm.workbench.zero_shot, c, test_id=c.id, suite="zero_shot")
    where = dict(suite="zero_shot", test_id=c.id, model=c.model, dataset=c.dataset, prompt_set=c.prompt_set)
    mm.records.figure(metric="top1", value=metrics.top1, threshold=c.min_top1, n=metrics.n,
                      dataset_description=mm.matrix.datasets[c.dataset].description, **where)
    mm.records.figure(metric="top5", value=metrics.top5, **where)
    mm.records.figure(metric="mean_per_class_recall", value=metrics.mean_per_class_recall,
                      per_class=metrics.per_class_recall, **where)
    if c.min_top1 is None:
        pytest.skip(f"top-1 {metrics.top1:.3f}: no min_top1 in the matrix, so measured and reported only")
    assert metrics.top1 >= c.min_top1, f"{c.id}: top-1 {metrics.top1:.4f} < min_top1 {c.min_top1}"


def test_prompt_gain(gain_check, mm):
    c = gain_check
    gain = mm.available(mm.workbench.prompt_gain, c, test_id=c.id, suite="prompt_gain")
    mm.records.figure(suite="prompt_gain", test_id=c.id, metric="gain", value=gain.gain, threshold=c.min_gain,
                      stderr=gain.stderr, baseline_top1=gain.baseline, candidate_top1=gain.candidate,
                      model=c.model, dataset=c.dataset, baseline=c.baseline, candidate=c.candidate, n=gain.n)
    if c.min_gain is None:
        pytest.skip(f"gain {gain.gain:+.3f}: no min_gain in the matrix, so measured and reported only")
    assert gain.gain >= c.min_gain, (
        f"{c.id}: '{c.candidate}' beats '{c.baseline}' by {gain.gain:+.4f} (se {gain.stderr:.4f}), "
        f"less than min_gain {c.min_gain}"
    )
