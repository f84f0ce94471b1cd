"""Run history in the report: deltas against the previous run, append-only files, and what is not fatal."""

import json
import re

import pytest

from mmtests.report import history
from mmtests.report.__main__ import build, main

RUN_IDS = ("20260101T000000Z", "20260102T000000Z")


def records(tmp_path, run_id: str, top1: float, versions: dict | None = None):
    path = tmp_path / f"records-{run_id}.jsonl"
    environment = {"device": "cpu", "device_name": "x86_64", **({"versions": versions} if versions is not None else {})}
    lines = [
        {"kind": "run", "run_id": run_id, "environment": environment},
        {"kind": "figure", "run_id": run_id, "suite": "zero_shot", "test_id": "m/d/big", "metric": "top1", "value": top1,
         "threshold": None, "outcome": "measured", "model": "m", "dataset": "d", "prompt_set": "big"},
        {"kind": "figure", "run_id": run_id, "suite": "zero_shot", "test_id": "m/d/bare", "metric": "top1", "value": 0.5,
         "threshold": None, "outcome": "measured", "model": "m", "dataset": "d", "prompt_set": "bare"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def sweep_benchmark(model: str, modality: str, batch: int, items_per_s: float) -> dict:
    name = f"test_embedding_throughput[{model}-{modality}-b{batch}]"
    return {"name": name, "fullname": f"benchmarks/test_embedding_throughput.py::{name}",
            "stats": {"median": batch / items_per_s, "rounds": 3},
            "extra_info": {"model": model, "weights": "trained", "modality": modality, "batch_size": batch,
                           "items_per_s": items_per_s, "mfu": 0.01, "flops_per_item": 1e8, "device": "cpu", "dtype": "float32",
                           "pass_memory_bytes": 2**20, "peak_memory_bytes": 2**30}}


def benchmarks(tmp_path, tag: str, speed: float, cpu: str = "test cpu"):
    path = tmp_path / f"bench-{tag}.json"
    data = {"machine_info": {"cpu": {"brand_raw": cpu}}, "benchmarks": [
        sweep_benchmark("tiny", modality, batch, speed * batch * (2 if modality == "text" else 1))
        for modality in ("image", "text") for batch in (1, 8, 32)
    ]}
    path.write_text(json.dumps(data))
    return path


def squeezed(built) -> str:
    """The report with runs of spaces (table padding) collapsed to one."""
    return re.sub(r" +", " ", built.report.read_text())


def two_runs(tmp_path, *, top1=(0.90, 0.85), speed=(100.0, 90.0), **kw):
    out = tmp_path / "out"
    for run_id, acc, s in zip(RUN_IDS, top1, speed, strict=True):
        built = build(records(tmp_path, run_id, acc), out, benchmarks(tmp_path, run_id, s), **kw)
    return out, built


def test_regressions_beyond_the_thresholds_are_flagged(tmp_path):
    _, built = two_runs(tmp_path)
    text = squeezed(built)
    assert built.regressions == 7  # top-1 fell 5 points; all six benchmarks 10% slower
    assert f"Compared with run {RUN_IDS[0]}: 7 regressions, 0 improvements, 0 changes not judged" in text
    assert "1 within thresholds" in text
    assert "| ❌ regression | accuracy | m/d/big top1 | 0.900 | 0.850 | -0.050 |" in text
    assert "| ❌ regression | throughput | test_embedding_throughput[tiny-image-b8] | 800 | 720 | -10.0% |" in text


def test_improvements_are_shown_and_small_changes_are_not(tmp_path):
    _, built = two_runs(tmp_path, top1=(0.85, 0.905), speed=(100.0, 102.0))
    text = squeezed(built)
    assert built.regressions == 0
    assert "| ⬆ improvement | accuracy | m/d/big top1 | 0.850 | 0.905 | +0.055 |" in text
    assert "+2.0%" not in text  # within the 5% throughput threshold: counted, not listed


def test_thresholds_are_configurable(tmp_path):
    from mmtests.report.history import Thresholds

    _, built = two_runs(tmp_path, thresholds=Thresholds(max_throughput_drop=0.2, max_accuracy_drop=0.1))
    assert built.regressions == 0


def test_throughput_on_another_machine_is_not_compared(tmp_path):
    out = tmp_path / "out"
    build(records(tmp_path, RUN_IDS[0], 0.9), out, benchmarks(tmp_path, "a", 100.0, cpu="fast cpu"))
    built = build(records(tmp_path, RUN_IDS[1], 0.9), out, benchmarks(tmp_path, "b", 50.0, cpu="slow cpu"))
    text = squeezed(built)
    assert built.regressions == 0
    assert "the previous benchmarks ran on fast cpu, these on slow cpu: throughput is not compared" in text
    assert "-50.0%" not in text


def test_the_first_run_says_there_is_nothing_to_compare(tmp_path):
    built = build(records(tmp_path, RUN_IDS[0], 0.9), tmp_path / "out")
    assert "no earlier run in" in built.report.read_text()


def test_a_broken_previous_run_is_reported_not_fatal(tmp_path):
    history = tmp_path / "out" / "history"
    history.mkdir(parents=True)
    (history / f"{RUN_IDS[0]}.json").write_text('{"run_id": "20260101T0000')
    built = build(records(tmp_path, RUN_IDS[1], 0.9), tmp_path / "out")
    text = built.report.read_text()
    assert f"previous run {history / RUN_IDS[0]}.json could not be read" in text
    assert built.regressions == 0 and (history / f"{RUN_IDS[1]}.json").is_file()


def test_history_is_append_only(tmp_path):
    out = tmp_path / "out"
    build(records(tmp_path, RUN_IDS[0], 0.9), out)
    kept = (out / "history" / f"{RUN_IDS[0]}.json").read_text()
    built = build(records(tmp_path, RUN_IDS[0], 0.1), out)  # the same run id again, other figures
    assert (out / "history" / f"{RUN_IDS[0]}.json").read_text() == kept
    assert "already existed and was left as it was" in built.report.read_text()


def test_history_holds_the_runs_figures_and_benchmarks(tmp_path):
    out, _ = two_runs(tmp_path)
    snap = json.loads((out / "history" / f"{RUN_IDS[1]}.json").read_text())
    assert {"suite": "zero_shot", "test_id": "m/d/big", "metric": "top1", "value": 0.85} in snap["figures"]
    bench = {b["name"]: b for b in snap["benchmarks"]}
    assert bench["test_embedding_throughput[tiny-image-b8]"]["items_per_s"] == 720.0
    assert bench["test_embedding_throughput[tiny-image-b8]"]["median_s"] == 8 / 720


def test_the_packages_whose_version_changed_since_the_previous_run_are_named(tmp_path):
    out = tmp_path / "out"
    night_1 = {"torch": "2.14.1", "transformers": "5.25.0", "datasets": "5.2.0", "mmtests": "0.1.0"}
    night_2 = {**night_1, "torch": "2.15.0", "datasets": None, "open_clip_torch": "3.3.0"}
    build(records(tmp_path, RUN_IDS[0], 0.9, night_1), out)
    built = build(records(tmp_path, RUN_IDS[1], 0.9, night_2), out)
    assert (f"- versions changed since run {RUN_IDS[0]}: datasets 5.2.0 -> (absent), open_clip_torch (absent) -> 3.3.0, "
            "torch 2.14.1 -> 2.15.0\n") in built.report.read_text()
    assert json.loads((out / "history" / f"{RUN_IDS[1]}.json").read_text())["versions"]["torch"] == "2.15.0"


def test_unchanged_or_unrecorded_versions_are_not_called_changed(tmp_path):
    out = tmp_path / "out"
    build(records(tmp_path, RUN_IDS[0], 0.9), out)  # a history file from before versions were kept
    built = build(records(tmp_path, RUN_IDS[1], 0.9, {"torch": "2.15.0"}), out)
    assert "versions changed" not in built.report.read_text()
    assert history.changed_versions({"versions": {"torch": "2.15.0"}}, {"versions": {"torch": "2.15.0"}}) == []


@pytest.mark.parametrize("flag", ["--fail-on-regression", "--compare-fail"])  # the old name stays an alias
def test_fail_on_regression_sets_the_exit_code(tmp_path, capsys, flag):
    out = tmp_path / "out"
    args = ["--out", str(out), "--history", str(tmp_path / "hist")]
    assert main(["--records", str(records(tmp_path, RUN_IDS[0], 0.9)), *args, flag]) == 0
    second = ["--records", str(records(tmp_path, RUN_IDS[1], 0.8)), *args]
    assert main(second) == 0  # regressions are reported; the exit code changes only when asked
    (tmp_path / "hist" / f"{RUN_IDS[1]}.json").unlink()
    assert main([*second, flag]) == 3
    (tmp_path / "hist" / f"{RUN_IDS[1]}.json").unlink()
    assert main([*second, flag, "--max-accuracy-drop", "0.2"]) == 0
    assert ("--compare-fail is deprecated" in capsys.readouterr().err) == (flag == "--compare-fail")


def test_a_benchmark_is_compared_across_the_move_into_the_package(tmp_path):
    """History written when the benchmarks lived in `benchmarks/` matches runs of `mmtests/benchmarks/` and of an
    installed wheel."""
    old = {"run_id": "a", "figures": [], "benchmarks": [{"name": "t[x]", "fullname": "benchmarks/t.py::t[x]",
                                                         "items_per_s": 100.0}]}
    for fullname in ("mmtests/benchmarks/t.py::t[x]", "../venv/lib/site-packages/mmtests/benchmarks/t.py::t[x]"):
        new = {"run_id": "b", "figures": [], "benchmarks": [{"name": "t[x]", "fullname": fullname, "items_per_s": 50.0}]}
        result = history.compare(old, new, history.DEFAULT_THRESHOLDS)
        assert [d.verdict for d in result.deltas] == ["regression"] and result.new == result.gone == 0


def test_each_dtype_of_a_model_gets_its_own_table(tmp_path):
    data = {"benchmarks": [sweep_benchmark("tiny", "image", 8, 800.0), sweep_benchmark("tiny", "image", 8, 900.0)]}
    data["benchmarks"][1]["name"] += "-bf16"
    data["benchmarks"][1]["extra_info"]["dtype"] = "bfloat16"
    (tmp_path / "bench.json").write_text(json.dumps(data))
    text = squeezed(build(records(tmp_path, RUN_IDS[0], 0.9), tmp_path / "out", tmp_path / "bench.json"))
    assert "cpu, float32;" in text and "cpu, bfloat16;" in text
    assert "| image | items/s | 800 |" in text and "| image | items/s | 900 |" in text


def test_benchmarks_are_tabulated_by_model_with_batch_size_columns_and_plotted(tmp_path):
    built = build(records(tmp_path, RUN_IDS[0], 0.9), tmp_path / "out", benchmarks(tmp_path, "a", 100.0))
    text = squeezed(built)
    assert "**tiny** (trained weights; cpu, float32; GFLOP per item: image 0.1, text 0.1)" in text
    assert "| | batch size | 1 | 8 | 32 |" in text
    assert "| image | items/s | 100 | 800 | 3,200 |" in text
    assert "| text | MFU | 1.00% | 1.00% | 1.00% |" in text
    assert "| text | peak memory (MiB) | 1,024 | 1,024 | 1,024 |" in text
    assert (built.report.parent / "throughput_by_batch_size.png").stat().st_size > 1000
    assert "](throughput_by_batch_size.png)" in text


def test_direction_of_change_depends_on_the_metric():
    from mmtests.report.history import DEFAULT_THRESHOLDS, compare

    def snap(run_id, yes, leak, share, acc):
        return {"run_id": run_id, "figures": [
            {"suite": "pope", "test_id": "m/q/adv", "metric": "yes_ratio", "value": yes, "target": 0.5},
            {"suite": "attention", "test_id": "m/q/c", "metric": "causal_leak", "value": leak},
            {"suite": "attention", "test_id": "m/q/c", "metric": "image_share", "value": share},
            {"suite": "vlm_answers", "test_id": "m/q/colour", "metric": "accuracy", "value": acc}]}

    result = compare(snap("a", 0.65, 0.0, 0.8, 0.9), snap("b", 0.45, 0.1, 0.5, 0.8), DEFAULT_THRESHOLDS)
    verdicts = {d.name: d.verdict for d in result.deltas}
    assert verdicts == {"m/q/adv yes_ratio": "improvement",  # .15 from the truth -> .05
                        "m/q/c causal_leak": "regression",  # lower is better
                        "m/q/c image_share": "same",  # describes the model, never flagged
                        "m/q/colour accuracy": "regression"}


def one_figure(tmp_path, run_id: str, top1: float = 0.9):
    """A finished run (format with end lines) with a single prompt set: no plot, so no matplotlib in workers."""
    path = tmp_path / f"one-{run_id}.jsonl"
    lines = [{"kind": "run", "run_id": run_id, "writer": "main", "environment": {"device": "cpu"}},
             {"kind": "figure", "run_id": run_id, "suite": "zero_shot", "test_id": "m/d/big", "metric": "top1",
              "value": top1, "threshold": None, "outcome": "measured", "model": "m", "dataset": "d", "prompt_set": "big"},
             {"kind": "end", "run_id": run_id, "writer": "main"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def _report(records, out, barrier, results):
    barrier.wait()  # all eight start together
    try:
        built = build(records, out)
        results.put((built.report.read_text(), built.latest))
    except BaseException as err:
        results.put((f"{err.__class__.__name__}: {err}", None))
        raise


def concurrently(paths, out):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(len(paths)), ctx.Queue()
    workers = [ctx.Process(target=_report, args=(p, out, barrier, results)) for p in paths]
    for w in workers:
        w.start()
    texts = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join()
        assert w.exitcode == 0
    return texts


def test_concurrent_reports_compare_with_whole_runs_and_latest_names_the_newest(tmp_path):
    out = tmp_path / "out"
    build(one_figure(tmp_path, "20260101T000000Z"), out)
    ids = [f"202601{day:02d}T000000Z" for day in range(2, 10)]
    texts = concurrently([one_figure(tmp_path, i) for i in reversed(ids)], out)
    for text, _ in texts:
        assert "could not be read" not in text and "Problems reading" not in text
        assert re.search(r"Compared with run 202601\d\dT000000Z: 0 regressions", text)
    assert (out / "latest.md").read_text().startswith(f"# mmtests report: {ids[-1]}\n")
    assert sorted(p.name for p in (out / "history").iterdir()) == [f"{i}.json" for i in ["20260101T000000Z", *ids]]
    assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_concurrent_reports_of_one_run_all_succeed(tmp_path):
    out, run_id = tmp_path / "out", "20260102T000000Z"
    build(one_figure(tmp_path, "20260101T000000Z"), out)
    texts = concurrently([one_figure(tmp_path, run_id)] * 8, out)
    assert all(text.startswith(f"# mmtests report: {run_id}\n") for text, _ in texts)
    assert (out / run_id / "report.md").is_file() and (out / "history" / f"{run_id}.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".latest.lock"]


def test_a_half_written_history_file_is_never_read(tmp_path):
    from mmtests.figures.record_files import temp_name

    out = tmp_path / "out"
    build(one_figure(tmp_path, "20260101T000000Z"), out)
    temp_name(out / "history" / "20260102T000000Z.json").write_text('{"run_id": "2026')  # another report, mid-write
    text = build(one_figure(tmp_path, "20260103T000000Z"), out).report.read_text()
    assert "Compared with run 20260101T000000Z" in text and "could not be read" not in text


def test_latest_is_not_replaced_by_an_older_run(tmp_path, capsys):
    out = tmp_path / "out"
    assert build(one_figure(tmp_path, "20260102T000000Z"), out).latest
    older = build(one_figure(tmp_path, "20260101T000000Z"), out)
    assert not older.latest and older.report.is_file()
    assert (out / "latest.md").read_text().startswith("# mmtests report: 20260102T000000Z\n")
    main(["--records", str(one_figure(tmp_path, "20260101T000000Z")), "--out", str(out)])
    assert "latest.md shows a newer run and was left as it was" in capsys.readouterr().out


def test_a_history_file_without_figures_is_skipped_for_the_next_readable_run(tmp_path, capsys):
    """A file holding only a run id is no run: read as one, every figure would be new and a regression against
    the older readable run missed."""
    hist = tmp_path / "hist"
    args = ["--out", str(tmp_path / "out"), "--history", str(hist), "--fail-on-regression"]
    assert main(["--records", str(records(tmp_path, RUN_IDS[0], 0.9)), *args]) == 0
    for damaged, why in [({"run_id": "20260101T120000Z"}, "no 'figures'"),
                         ({"run_id": "20260101T120000Z", "figures": {}, "benchmarks": []}, "'figures' is not a list of objects"),
                         ({"run_id": "20260101T120000Z", "figures": []}, "no 'benchmarks'")]:
        (hist / "20260101T120000Z.json").write_text(json.dumps(damaged))
        (hist / f"{RUN_IDS[1]}.json").unlink(missing_ok=True)
        assert main(["--records", str(records(tmp_path, RUN_IDS[1], 0.8)), *args]) == 3
        text = (tmp_path / "out" / RUN_IDS[1] / "report.md").read_text()
        assert f"previous run {hist}/20260101T120000Z.json could not be read ({why}); skipped" in text
        assert f"Compared with run {RUN_IDS[0]}: 1 regressions" in text


@pytest.mark.parametrize("version", [None, 1, 2, "1", True, 1.5, []])
def test_a_history_file_carries_its_format_and_a_newer_one_is_not_misread(tmp_path, version):
    """Written with `format`; read when it is absent (an older file) or known, skipped with the reason otherwise."""
    out = tmp_path / "out"
    build(records(tmp_path, RUN_IDS[0], 0.9), out)
    first = out / "history" / f"{RUN_IDS[0]}.json"
    snap = json.loads(first.read_text())
    assert snap["format"] == history.FORMAT
    snap.pop("format") if version is None else snap.update(format=version)
    first.write_text(json.dumps(snap))
    text = build(records(tmp_path, RUN_IDS[1], 0.8), out).report.read_text()
    readable = version in (None, 1) and version is not True
    assert (f"Compared with run {RUN_IDS[0]}" in text) == readable
    assert ("not one this mmtests reads" in text) == (not readable)


def _night(run_id: str, items_per_s: float, machine: str = "cpu A", **info) -> dict:
    return {"run_id": run_id, "benchmark_machine": machine, "figures": [], "benchmarks": [
        {"name": "b", "fullname": "f::b", "median_s": 1 / items_per_s, "items_per_s": items_per_s, **info}]}


def _verdicts_over(speeds: list[float], thresholds=history.DEFAULT_THRESHOLDS, **last_info) -> list[str]:
    """Each night's throughput verdict against the nights before it, as the report judges them."""
    snaps = [_night(f"2026010{i}", s) for i, s in enumerate(speeds)]
    snaps[-1]["benchmarks"][0].update(last_info)
    out = []
    for i in range(1, len(snaps)):
        nights = snaps[:i][::-1][:thresholds.throughput_nights]
        result = history.compare(nights[0], snaps[i], thresholds, nights)
        out.append(result.deltas[0].verdict)
    return out


def test_a_slide_of_4_percent_a_night_trips_the_5_percent_threshold():
    slide = [100 * 0.96**i for i in range(6)]
    verdicts = _verdicts_over(slide)
    assert "regression" in verdicts
    assert verdicts[-1] == "regression"  # 5 nights down: 11.5% below the median of the 5 before
    # judged against the previous night only, it never trips
    assert _verdicts_over(slide, history.Thresholds(throughput_nights=1)) == ["same"] * 5


@pytest.mark.parametrize("noisy", [80.0, 125.0])
def test_a_single_noisy_night_does_not_trip_the_nights_after_it(noisy):
    verdicts = _verdicts_over([100, 101, 99, 100, noisy, 100, 99])
    assert verdicts[3] != "same"  # the noisy night itself stands out
    assert verdicts[4:] == ["same", "same"]  # the nights after it are judged against the median, not against it
    # against the previous night alone, the night after it would be flagged
    assert _verdicts_over([100, 101, 99, 100, noisy, 100], history.Thresholds(throughput_nights=1))[-1] != "same"


def test_a_contended_night_is_left_out_of_the_median_and_never_judged():
    thresholds = history.DEFAULT_THRESHOLDS
    nights = [_night("3", 60.0, contended="other processes used 40% of the CPUs"), _night("2", 100.0), _night("1", 100.0)]
    result = history.compare(nights[0], _night("4", 100.0), thresholds, nights)
    assert (result.deltas[0].previous, result.deltas[0].verdict) == (100.0, "same")
    assert result.deltas[0].reference == "median of 2 of 3 runs"
    slow = history.compare(nights[0], _night("4", 50.0, contended="busy"), thresholds, nights)
    assert slow.deltas[0].verdict == "not judged"


def test_nights_on_another_machine_are_not_a_reference():
    nights = [_night("2", 100.0, machine="cpu B"), _night("1", 50.0)]
    result = history.compare(nights[0], _night("3", 100.0), history.DEFAULT_THRESHOLDS, nights)
    assert result.throughput_runs == ("1",)
    assert result.deltas[0].verdict == "improvement"


def test_the_report_says_which_throughput_reference_it_used(tmp_path):
    out = tmp_path / "out"
    run_ids = [f"2026010{i}T000000Z" for i in range(1, 5)]
    for run_id, speed in zip(run_ids, (100.0, 100.0, 100.0, 80.0), strict=True):
        built = build(records(tmp_path, run_id, 0.9), out, benchmarks(tmp_path, run_id, speed))
    text = squeezed(built)
    assert f"Throughput is compared with the median of the last 3 runs on this machine ({', '.join(run_ids[2::-1])};" \
        in text
    assert "median of 3 of 3 runs" in text
    assert "![trend over the last runs](trend.png)" in text and (built.report.parent / "trend.png").is_file()
