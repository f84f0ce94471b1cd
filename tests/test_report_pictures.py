"""The report's pictures: 95% intervals on the accuracy bars and the prompt gains, and the trend over the history."""

import json

import matplotlib.axes
import pytest

from mmtests.report import plots, trend


@pytest.fixture
def errorbars(monkeypatch):
    """The error bars drawn, as (value, lower, upper)."""
    drawn = []
    real = matplotlib.axes.Axes.errorbar

    def spy(self, x, y, *args, **kw):
        err = kw.get("yerr", kw.get("xerr"))
        value = y if "yerr" in kw else x
        drawn.append((value, value - err[0][0], value + err[1][0]))
        return real(self, x, y, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    return drawn


def _zs(prompt_set, value, **kw):
    return {"model": "m", "dataset": "d", "prompt_set": prompt_set, "value": value, "threshold": None, **kw}


def test_zero_shot_bars_carry_wilson_intervals_and_a_figure_without_n_none(tmp_path, errorbars):
    plots.accuracy_by_prompt_set([_zs("bare", 0.80, n=2000), _zs("big", 0.815, n=2000), _zs("old", 0.9)],
                                 tmp_path / "z.png")
    assert [round(v, 3) for v, _, _ in errorbars] == [0.8, 0.815]
    value, lo, hi = errorbars[0]
    assert (round(lo, 3), round(hi, 3)) == (0.782, 0.817)  # a 1.5-point gain lies inside: the picture says so


def test_llava_accuracy_bars_carry_intervals(tmp_path, errorbars):
    rows = [{"model": "m", "question_set": "q", "question_kind": k, "value": v, "n": 100, "threshold": 0.5}
            for k, v in (("colour", 1.0), ("shape", 0.6))]
    assert plots.accuracy_by_kind(rows, tmp_path / "a.png").is_file()
    assert [(v, round(lo, 3), round(hi, 3)) for v, lo, hi in errorbars] == [(1.0, 0.963, 1.0), (0.6, 0.502, 0.691)]


def test_prompt_gains_carry_their_stderr_interval(tmp_path, errorbars):
    rows = [{"model": "m", "dataset": "d", "candidate": "big", "baseline": "bare", "value": 0.015, "stderr": 0.005,
             "threshold": 0.01}]
    assert plots.prompt_gains(rows, tmp_path / "g.png").is_file()
    assert [(round(lo, 4), round(hi, 4)) for _, lo, hi in errorbars] == [(0.0052, 0.0248)]


def _snap(run_id, top1, speed):
    return {"run_id": run_id, "benchmark_machine": "cpu", "figures": [
        {"suite": "zero_shot", "test_id": "m/d/p", "metric": "top1", "value": top1},
        {"suite": "zero_shot", "test_id": "m/d/p", "metric": "agreement", "value": 0.999}],
        "benchmarks": [{"name": "b", "fullname": "f::b", "model": "m", "modality": "image", "batch_size": 8,
                        "items_per_s": speed}]}


def test_the_trend_draws_the_history_runs_oldest_first(tmp_path):
    history = tmp_path / "history"
    history.mkdir()
    for i in range(3):
        (history / f"2026010{i}T000000Z.json").write_text(json.dumps(_snap(f"2026010{i}T000000Z", 0.8, 100 - i)))
    (history / "20260103T000000Z.json").write_text("{broken")
    snaps = trend.recent(history, _snap("20260104T000000Z", 0.81, 90))
    assert [s["run_id"][:8] for s in snaps] == ["20260100", "20260101", "20260102", "20260104"]
    assert trend._series(snaps, {"top1", "agreement"})["top1"]["m/d/p"] == [0.8, 0.8, 0.8, 0.81]
    assert trend._throughput(snaps)["m image"]["batch    8"] == [100, 99, 98, 90]
    assert trend.trend_plot(snaps, {"agreement"}, tmp_path / "t.png").is_file()
    assert trend.trend_plot(snaps[-1:], {"agreement"}, tmp_path / "one.png") is None  # nothing to trend
