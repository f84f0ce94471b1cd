"""The figures contract: the metric table decides directions, bounds and trivial floors, and a check's bound
survives the records, for every metric of the table."""

import json

import pytest

from mmtests.config.schema import ARRAY_SECTIONS, keys
from mmtests.figures.check import FAIL, MEASURED, PASS, bound_text, judged, measured
from mmtests.figures.metrics import METRICS, bounded_by, metric
from mmtests.figures.record_reader import read_run
from mmtests.figures.record_schema import SCHEMA_VERSION, bound_of
from mmtests.figures.record_writer import RecordWriter

WITH_TRIVIAL = sorted(name for name, m in METRICS.items() if m.trivial)


def test_a_metric_outside_the_table_is_named():
    with pytest.raises(KeyError, match="'top_1' is not in mmtests.figures.metrics.METRICS; add its row"):
        judged("top_1", 0.5, 0.4)


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("bound", [None, 0.0, 0.25, 1.0])
def test_every_metric_is_judged_in_its_direction(name, bound):
    spec = METRICS[name]
    below, above = judged(name, bound - 0.1 if bound is not None else 0.1, bound), judged(name, (bound or 0) + 0.1, bound)
    if bound is None:
        assert below.outcome == above.outcome == MEASURED
    else:
        assert (below.outcome, above.outcome) == ((FAIL, PASS) if spec.higher_is_better else (PASS, FAIL))
        assert below.kind == spec.bound_kind
    assert measured(name, 0.5).higher_is_better == spec.higher_is_better


@pytest.mark.parametrize("name", WITH_TRIVIAL)
@pytest.mark.parametrize("trivial", [0.0, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("bound", [0.1, 0.3, 0.5, 0.7, 0.95])
def test_a_floor_that_does_not_beat_the_trivial_strategy_fails(name, trivial, bound):
    """Whatever the figure: a floor at or below what the trivial strategy scores catches nothing."""
    check = judged(name, 1.0, bound, trivial=trivial)
    if bound <= trivial:
        assert check.outcome == FAIL
        assert f"does not beat {METRICS[name].trivial} ({trivial:.3f} here)" in check.explain
        assert METRICS[name].matrix_key in check.explain
    else:
        assert check.outcome == PASS and not check.explain


def test_matrix_keys_name_one_metric_each():
    keys = [m.matrix_key for m in METRICS.values() if m.matrix_key]
    assert len(keys) == len(set(keys))
    assert all(bounded_by(k) is metric(bounded_by(k).name) for k in keys)
    assert bounded_by("min_top1").name == "top1" and bounded_by("max_sink_share").name == "sink_share"


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("kind", ["bound", "measured"])
def test_a_bound_survives_the_records(tmp_path, name, kind):
    check = judged(name, 0.5, 0.25 if kind == "bound" else None)
    writer = RecordWriter(tmp_path / "records.jsonl", {"device": "cpu"}, run_id="R")
    writer.check(suite="s", test_id="t", check=check, model="m")
    writer.close()
    run = read_run(tmp_path / "records.jsonl")
    (figure,) = run.figures
    assert bound_of(figure) == ((check.kind, check.bound) if kind == "bound" else ("measured", None))
    assert figure["outcome"] == check.outcome and figure["higher_is_better"] == METRICS[name].higher_is_better
    assert bound_text(*bound_of(figure)) == check.bound_text().replace(">=", "≥").replace("<=", "≤")


def test_records_carry_their_schema_version_and_a_newer_one_is_named(tmp_path):
    writer = RecordWriter(tmp_path / "records.jsonl", {"device": "cpu"}, run_id="R")
    writer.check(suite="s", test_id="t", check=judged("top1", 0.5, None), model="m")
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "run" and lines[0]["schema"] == SCHEMA_VERSION
    lines[0]["schema"] = SCHEMA_VERSION + 1
    (tmp_path / "newer.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    problems = read_run(tmp_path / "newer.jsonl").problems
    assert any(f"schema {SCHEMA_VERSION + 1}" in p and "upgrade mmtests" in p for p in problems)


def test_the_matrix_bounds_figures_through_the_metric_table():
    """Every key that bounds a figure names its metric, and every metric with a matrix key has that key."""
    bounding = {name: f.metadata["bounds"] for entry in ARRAY_SECTIONS.values() for name, f in keys(entry).items()
                if f.metadata.get("bounds")}
    assert {k: METRICS[m].matrix_key for k, m in bounding.items()} == {k: k for k in bounding}
    assert set(bounding) == {m.matrix_key for m in METRICS.values() if m.matrix_key}
