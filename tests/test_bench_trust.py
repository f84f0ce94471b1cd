"""Benchmark figures a reader can trust: the CPU peak is the best probe round, utilisation above 100% is
flagged with its cause, spread and contention are recorded, and history does not judge contended figures."""

import json
import subprocess
import sys
import time

import pytest
from test_report_history import RUN_IDS, records, squeezed, sweep_benchmark

from mmtests.bench import contention, perf, trust
from mmtests.report.__main__ import build


@pytest.fixture
def fresh_probes(monkeypatch):
    monkeypatch.setattr(perf, "_PROBES", [])
    monkeypatch.setattr(perf, "theoretical_cpu_flops", lambda threads: None)


def test_the_cpu_peak_is_the_best_probe_round_before_or_after(fresh_probes, monkeypatch):
    readings = iter([50e9, 60e9, 200e9, 190e9])  # two sizes per round: a loaded round, then an idle one
    monkeypatch.setattr(perf, "cpu_matmul_flops", lambda size, repeats: next(readings))
    monkeypatch.setattr(perf, "cpu_copy_bandwidth", lambda repeats: 10e9)
    assert perf.cpu_peak().flops["float32"] == 60e9  # first use: one round
    perf.probe_cpu("after")
    peak = perf.cpu_peak()
    assert peak.flops["float32"] == 200e9
    assert "before 60.0, after 200.0 GFLOP/s" in peak.source and peak.source.startswith("measured")


def test_a_theoretical_peak_is_preferred_when_the_clock_can_be_read(fresh_probes, monkeypatch):
    monkeypatch.setattr(perf, "theoretical_cpu_flops", lambda threads: (1e12, "theoretical: 2 GHz x ..."))
    monkeypatch.setattr(perf, "cpu_matmul_flops", lambda size, repeats: 1e11)
    monkeypatch.setattr(perf, "cpu_copy_bandwidth", lambda repeats: 10e9)
    peak = perf.cpu_peak()
    assert peak.flops["float32"] == 1e12 and peak.source.startswith("theoretical")


def bench(achieved=1e9, rounds=5, iqr=0.001, median=0.1, **info):
    return {"name": "b", "stats": {"rounds": rounds, "iqr": iqr, "median": median},
            "extra_info": {"device": "cpu", "dtype": "float32", "achieved_flops": achieved, **info}}


PEAK = perf.DevicePeak("CPU", {"float32": 2e9}, 1e9, "measured: best of 2 probe rounds")


def test_settle_computes_mfu_against_the_final_peak_and_flags_what_is_above_it():
    data = {"benchmarks": [bench(1e9), bench(3e9, contended="other processes used 40% of the 2 CPUs")]}
    trust.settle(data, {"cpu": PEAK})
    ok, over = (b["extra_info"] for b in data["benchmarks"])
    assert ok["mfu"] == 0.5 and ok["flags"] == []
    assert over["mfu"] == 1.5
    assert any("MFU 150% is above 100%" in f and "probes read low" in f and "40%" in f for f in over["flags"])


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_utilisation_above_a_datasheet_peak_blames_the_count(device):
    data = {"benchmarks": [bench(3e9, device=device)]}
    trust.settle(data, {"cuda": perf.DevicePeak("H100", {"float32": 2e9}, 1e9, "NVIDIA datasheet, ...")})
    assert any("count of this benchmark counts work that was not done" in f for f in data["benchmarks"][0]["extra_info"]["flags"])


def test_mbu_from_the_decode_step_against_the_final_peak():
    data = {"benchmarks": [bench(None, per_token_latency_s=0.5, bytes_per_step=1e9)]}
    trust.settle(data, {"cpu": PEAK})
    info = data["benchmarks"][0]["extra_info"]
    assert info["mbu"] == 2.0 and any(f.startswith("MBU 200%") for f in info["flags"])


@pytest.mark.parametrize(("rounds", "iqr", "expected"), [(5, 0.02, 0.2), (5, 0.001, 0.01), (3, 0.02, None)])
def test_spread_is_iqr_over_median_and_needs_quartiles(rounds, iqr, expected):
    data = {"benchmarks": [bench(rounds=rounds, iqr=iqr)]}
    trust.settle(data, {})
    info = data["benchmarks"][0]["extra_info"]
    assert info["spread"] == pytest.approx(expected) if expected else info["spread"] is None
    assert any("spread 20%" in f for f in info["flags"]) == (expected == 0.2)


def test_other_processes_cpu_share_sees_a_busy_neighbour():
    """A busy-looping child process that is not ours is counted; our own work is not."""
    if contention.sample().busy_s is None:
        pytest.skip("needs Linux /proc/stat")
    before = contention.sample()
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:  # our own busy loop: not other work
        pass
    own = contention.other_cpu_share(before, contention.sample())
    neighbour = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.5)  # its start-up
        before = contention.sample()
        time.sleep(1.0)
        busy = contention.other_cpu_share(before, contention.sample())
    finally:
        neighbour.kill()
        neighbour.wait()
    cpus = before.cpus
    assert busy > own  # a whole core of other work shows; ours does not
    assert busy >= 0.5 / cpus  # at least half of one of the machine's CPUs
    figures = contention.figures(before, contention.sample())
    assert set(figures) >= {"load_avg_before", "load_avg_after", "other_cpu_share", "contended"}


def bench_file(tmp_path, tag, speed, **info):
    path = tmp_path / f"bench-{tag}.json"
    rows = [sweep_benchmark("tiny", "image", b, speed * b) for b in (1, 8)]
    for row in rows:
        row["extra_info"].update(info)
    path.write_text(json.dumps({"machine_info": {"cpu": {"brand_raw": "test cpu"}}, "benchmarks": rows}))
    return path


def test_contended_figures_are_not_called_regressions(tmp_path):
    out = tmp_path / "out"
    build(records(tmp_path, RUN_IDS[0], 0.9), out, bench_file(tmp_path, "a", 100.0))
    built = build(records(tmp_path, RUN_IDS[1], 0.9), out,
                  bench_file(tmp_path, "b", 50.0, contended="other processes used 60% of the 2 CPUs"))
    text = squeezed(built)
    assert built.regressions == 0
    assert "0 regressions, 0 improvements, 2 changes not judged" in text
    assert "not judged (this run contended: other processes used 60% of the 2 CPUs)" in text
    assert "| ⚠ not judged | throughput |" in text
    assert "400 ⚠" in text  # the contended items/s cell is marked


def test_a_report_never_shows_utilisation_above_100_percent_unflagged(tmp_path):
    out = tmp_path / "out"
    path = bench_file(tmp_path, "a", 100.0, mfu=1.37, flags=["MFU 137% is above 100%: the probes read low"])
    text = squeezed(build(records(tmp_path, RUN_IDS[0], 0.9), out, path))
    assert "137.00%" not in text and "⚠ 137%" in text
    assert "MFU 137% is above 100%: the probes read low" in text
