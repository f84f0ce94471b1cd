"""The report: built from records alone, survives bad lines, never imports torch."""

import json
import re
import subprocess
import sys

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
    report, failed, _ = build(records, tmp_path / "out")
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
