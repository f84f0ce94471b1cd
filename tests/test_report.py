"""The report: built from records alone, survives bad lines, never imports torch."""

import json
import re
import subprocess
import sys

import pytest

from mmtests.report.__main__ import build, main

RUN = {"kind": "run", "run_id": "20260101T000000Z", "environment": {"device": "cpu", "versions": {"torch": "x"}}}


def fig(**kw):
    base = {"kind": "figure", "run_id": RUN["run_id"], "threshold": None, "outcome": "measured"}
    return base | kw


FIGURES = [
    fig(suite="zero_shot", test_id="m/d/bare", metric="top1", value=0.5, model="m", dataset="d", prompt_set="bare"),
    fig(suite="zero_shot", test_id="m/d/big", metric="top1", value=0.9, threshold=0.8, outcome="pass",
        model="m", dataset="d", prompt_set="big"),
    fig(suite="prompt_gain", test_id="m/d/big-vs-bare", metric="gain", value=0.4, threshold=0.5, outcome="fail",
        stderr=0.01, baseline_top1=0.5, candidate_top1=0.9, model="m", dataset="d", baseline="bare", candidate="big"),
    fig(suite="zero_shot", test_id="x/d/bare", metric="available", value=None, outcome="skip",
        reason="weights 'x' are not cached"),
]


def write_records(tmp_path, lines):
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_report_has_tables_plot_failures_and_skip_reasons(tmp_path):
    records = write_records(tmp_path, [json.dumps(r) for r in [RUN, *FIGURES]])
    built = build(records, tmp_path / "out")
    report, failed = built.report, built.failed
    text = report.read_text()
    assert failed
    assert re.search(r"\|\s*m\s*\|\s*d\s*\|\s*0\.500\s*\|\s*0\.900 ✅ \(≥ 0\.80\)\s*\|", text)
    assert "+0.400 ± 0.010" in text and "`m/d/big-vs-bare`: gain 0.4 (min 0.5)" in text
    assert "weights 'x' are not cached" in text
    assert (report.parent / "zero_shot_by_prompt_set.png").stat().st_size > 1000
    latest = (tmp_path / "out" / "latest.md").read_text()
    assert f"]({RUN['run_id']}/zero_shot_by_prompt_set.png)" in latest


def test_a_truncated_record_is_reported_and_the_rest_kept(tmp_path):
    lines = [json.dumps(r) for r in [RUN, *FIGURES]] + ['{"kind": "figure", "suite": "zero_']
    report = build(write_records(tmp_path, lines), tmp_path / "out").report
    text = report.read_text()
    assert "Problems reading the records" in text and "line skipped" in text
    assert "0.900" in text


def test_fail_on_failure_sets_the_exit_code(tmp_path):
    records = write_records(tmp_path, [json.dumps(r) for r in [RUN, *FIGURES]])
    assert main(["--records", str(records), "--out", str(tmp_path / "o")]) == 0
    assert main(["--records", str(records), "--out", str(tmp_path / "o"), "--fail-on-failure"]) == 1


def test_missing_records_file_is_a_clear_error(tmp_path, capsys):
    assert main(["--records", str(tmp_path / "none.jsonl")]) == 2
    assert "run pytest first" in capsys.readouterr().err


def test_report_does_not_import_torch(tmp_path):
    records = write_records(tmp_path, [json.dumps(r) for r in [RUN, *FIGURES]])
    code = (
        "import sys; from mmtests.report.__main__ import build; from pathlib import Path; "
        f"build(Path({str(records)!r}), Path({str(tmp_path / 'o')!r})); "
        "assert 'torch' not in sys.modules, 'report imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


BAD_LINES = {  # a bad second line, and what the report says about it
    "older format": (json.dumps({k: v for k, v in FIGURES[0].items() if k != "suite"}),
                     "a figure without 'suite' (an older record format?)"),
    "string value": (json.dumps(FIGURES[0] | {"value": "0.5"}), "value '0.5' is a str, not a number"),
    "table field missing": (json.dumps({k: v for k, v in FIGURES[0].items() if k != "model"}),
                            "a zero_shot top1 figure without 'model' (an older record format?)"),
    "array": ("[1, 2]", "a JSON list, not an object"),
    "string": ('"figure"', "a JSON str, not an object"),
    "not UTF-8": ("\udcff\udcfe{}", "not UTF-8 text"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_a_bad_record_is_named_with_its_line_and_the_rest_is_reported(tmp_path, case):
    line, problem = BAD_LINES[case]
    records = tmp_path / "records.jsonl"
    records.write_bytes("\n".join([json.dumps(RUN), line, *map(json.dumps, FIGURES[1:])]).encode(errors="surrogateescape"))
    text = build(records, tmp_path / "out").report.read_text()
    assert f"## Problems reading the records\n\n- {records}:2: {problem}; line skipped" in text
    assert "0.900 ✅ (≥ 0.80)" in text and "`m/d/big-vs-bare`: gain 0.4 (min 0.5)" in text
    assert main(["--records", str(records), "--out", str(tmp_path / "o")]) == 0


def test_a_field_of_an_odd_type_costs_its_section_only(tmp_path):
    odd = FIGURES[0] | {"prompt_set": None}  # sorted() with the other prompt sets fails
    records = write_records(tmp_path, [json.dumps(r) for r in [RUN, odd, *FIGURES[1:]]])
    text = build(records, tmp_path / "out").report.read_text()
    assert "- the zero-shot section could not be written (TypeError:" in text
    assert "`m/d/big-vs-bare`: gain 0.4 (min 0.5)" in text and "weights 'x' are not cached" in text


def test_unreadable_benchmarks_and_a_folder_named_json_in_the_history_are_problems(tmp_path):
    records = write_records(tmp_path, [json.dumps(r) for r in [RUN, *FIGURES]])
    bench = tmp_path / "bench.json"
    bench.write_bytes(b"\xff\xfe")
    odd = tmp_path / "out" / "history" / "20250101T000000Z.json"
    odd.mkdir(parents=True)
    text = build(records, tmp_path / "out", bench).report.read_text()
    assert f"- {bench}: not readable JSON (UnicodeDecodeError" in text
    assert f"- {odd}: in the history but not a file; skipped" in text
    assert "no earlier run in" in text


def test_an_error_leaves_no_partial_output_folder(tmp_path, monkeypatch):
    import mmtests.report.__main__ as report

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "_render", broken)
    records = write_records(tmp_path, [json.dumps(r) for r in [RUN, *FIGURES]])
    with pytest.raises(RuntimeError):
        build(records, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # no run folder, no history, no latest.md


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_records_file_is_a_clear_error(tmp_path, capsys, content):
    records = tmp_path / "records.jsonl"
    records.write_text(content)
    assert main(["--records", str(records), "--out", str(tmp_path / "o"), "--fail-on-failure"]) == 2
    err = capsys.readouterr().err
    assert f"records file {records} is empty: nothing was recorded (did the session run any mmtests check?)" in err
    assert not (tmp_path / "o").exists()
    text = build(records, tmp_path / "out").report.read_text()  # called directly, the report says so too
    assert "**Nothing recorded**" in text and "Records of an older format" not in text


def test_records_without_a_run_header_say_the_environment_is_unknown(tmp_path):
    records = write_records(tmp_path, [json.dumps(r) for r in FIGURES])
    text = build(records, tmp_path / "out").report.read_text()
    assert "- no run header (environment) line: the device, package versions and git sha of this run are unknown" in text
    assert re.search(r"\|\s*git\s*\|\s*unknown\s*\|", text) and "not a git checkout" not in text
    assert "0.900 ✅ (≥ 0.80)" in text  # the figures are all kept
    with_header = build(write_records(tmp_path, [json.dumps(r) for r in [RUN, *FIGURES]]), tmp_path / "out2")
    assert "no run header" not in with_header.report.read_text()


UNREADABLE_FIGURES = {  # a figure line the report cannot read, and why; each hides a failed figure
    "no outcome": ({k: v for k, v in FIGURES[2].items() if k != "outcome"}, "a figure without 'outcome'"),
    "no suite": ({k: v for k, v in FIGURES[2].items() if k != "suite"}, "a figure without 'suite'"),
    "string value": (FIGURES[2] | {"value": "0.4"}, "value '0.4' is a str, not a number"),
}


@pytest.mark.parametrize("case", UNREADABLE_FIGURES)
def test_unreadable_figure_lines_are_counted_and_fail_the_gate(tmp_path, capsys, case):
    line, why = UNREADABLE_FIGURES[case]
    records = write_records(tmp_path, [json.dumps(r) for r in [RUN, *FIGURES[:2], line, line]])
    built = build(records, tmp_path / "out")
    text = built.report.read_text()
    assert not built.failed and len(built.unreadable) == 2 and built.unreadable[0].startswith(f"{records}:4: {why}")
    headline = text.split("\n\n")[1]
    assert headline.startswith(f"**2 figure lines could not be read** ({why}") and "cannot be judged" in headline
    assert f"- {records}:4: {why}" in text and f"- {records}:5: {why}" in text
    assert main(["--records", str(records), "--out", str(tmp_path / "o")]) == 0  # reported; the gate is opt-in
    assert main(["--records", str(records), "--out", str(tmp_path / "o"), "--fail-on-failure"]) == 1
    err = capsys.readouterr().err
    assert f"mmtests.report: 2 figure lines could not be read ({records}:4: {why}" in err
    assert "the run cannot be judged" in err


def test_a_run_whose_figure_lines_are_all_unreadable_is_still_the_one_reported(tmp_path):
    older = [RUN | {"run_id": "20250101T000000Z"}, FIGURES[1] | {"run_id": "20250101T000000Z"}]
    broken = FIGURES[2] | {"value": "0.4"}
    records = write_records(tmp_path, [json.dumps(r) for r in [*older, RUN, broken]])
    built = build(records, tmp_path / "out")
    assert built.report.parent.name == RUN["run_id"] and built.unreadable
    assert "**1 figure line could not be read** (value '0.4' is a str, not a number)" in built.report.read_text()


@pytest.mark.parametrize("matrix", [None, "my.toml"])
def test_detection_power_says_which_models_the_faults_were_applied_to(matrix):
    from mmtests.report.markdown import detection_power

    faults = {"faults": [{"name": "noise", "what": "weights", "red": ["a"], "caught": True}], "detection_rate": 1.0,
              "clean": [{}], "false_alarms": 0, **({"matrix": matrix} if matrix else {})}
    text = detection_power(faults)
    assert ("copies of the model folders of `my.toml`" in text) == bool(matrix)
    assert ("the embedded zoo" in text) == (not matrix) and "Detection rate: **100%**" in text
