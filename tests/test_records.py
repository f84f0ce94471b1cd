"""Records that survive: a file per session and xdist worker, end lines, and a report that says when a run
did not finish (kill -9 simulated by killing a real process)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mmtests.figures.record_reader import read_run
from mmtests.figures.record_writer import RecordWriter, publish
from mmtests.report.__main__ import build, main

R1, R2, R3 = "20260101T000000.000000Z", "20260102T000000.000000Z", "20260103T000000.000000Z"
NODES = [f"suite.py::test_top1[m/d/{p}]" for p in "abcd"]
ENV = {"device": "cpu"}

WRITE_THEN_DIE = """
import os, signal, sys
from mmtests.figures.record_writer import RecordWriter
records, run_id, count, nodes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
writer = RecordWriter(records, {"device": "cpu"}, run_id=run_id)
writer.plan(nodes)
for node in nodes[:count]:
    os.environ["PYTEST_CURRENT_TEST"] = node + " (call)"
    writer.figure(suite="zero_shot", test_id=node.split("[")[1][:-1], metric="top1", value=0.5,
                  model="m", dataset="d", prompt_set=node[-2])
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_session(records, run_id, figures):
    """A session killed with SIGKILL after `figures` figures: no end line, no teardown, nothing flushed after."""
    done = subprocess.run([sys.executable, "-c", WRITE_THEN_DIE, str(records), run_id, str(figures), *NODES])
    assert done.returncode == -signal.SIGKILL


def figure(writer, monkeypatch, node):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", f"{node} (call)")
    writer.figure(suite="zero_shot", test_id=node.split("[")[1][:-1], metric="top1", value=0.5, model="m",
                  dataset="d", prompt_set=node[-2])


def session(records, run_id, monkeypatch, nodes=NODES, writer="main", close=True):
    w = RecordWriter(records, ENV, run_id=run_id, writer=writer)
    w.plan(NODES)
    for node in nodes:
        figure(w, monkeypatch, node)
    if close:
        w.close()
    return w


def test_a_killed_session_is_reported_incomplete_and_fails(tmp_path):
    records, out = tmp_path / "records.jsonl", tmp_path / "out"
    killed_session(records, R1, 2)
    assert not records.exists()  # FILE is written at the end of a session: this one had none
    built = build(records, out)
    text = built.report.read_text()
    assert ("**Incomplete run**: killed or crashed (no end line from main): 2 of 4 planned checks have no figure: "
            "`test_top1[m/d/c]`, `test_top1[m/d/d]`.") in text
    assert built.incomplete and "this run did not finish: it is not added to the history" in text
    assert not (out / "history" / f"{R1}.json").exists()
    assert main(["--records", str(records), "--out", str(out)]) == 0
    assert main(["--records", str(records), "--out", str(out), "--fail-on-failure"]) == 1


def test_previous_records_survive_a_session_that_crashes_before_its_first_figure(tmp_path, monkeypatch):
    records, out = tmp_path / "records.jsonl", tmp_path / "out"
    session(records, R1, monkeypatch)
    kept = records.read_bytes()
    killed_session(records, R2, 0)
    assert records.read_bytes() == kept and (tmp_path / "records.d" / R1 / "main.jsonl").is_file()
    text = build(records, out).report.read_text()
    assert text.startswith(f"# mmtests report: {R1}\n")
    assert (f"**This report shows run {R1}, not the newer run {R2}**: that run recorded no figure and has no end "
            "line (killed or crashed before its first figure, or still running).") in text
    assert main(["--records", str(records), "--out", str(out), "--fail-on-failure"]) == 1


def test_a_session_that_measured_nothing_leaves_the_previous_records(tmp_path, monkeypatch):
    records, out = tmp_path / "records.jsonl", tmp_path / "out"
    session(records, R1, monkeypatch)
    kept = records.read_bytes()
    session(records, R2, monkeypatch, nodes=[])  # collected, ran, recorded nothing (say, all skipped by a marker)
    assert records.read_bytes() == kept
    text = build(records, out).report.read_text()
    assert f"**This report shows run {R1}, not the newer run {R2}**: that run recorded no figure and ended normally." in text
    assert "Complete: every writer of the run (main) recorded its end; 4 of 4 planned checks have figures." in text
    assert main(["--records", str(records), "--out", str(out), "--fail-on-failure"]) == 0


def comparable(run):
    return sorted(json.dumps({k: v for k, v in f.items() if k != "run_id"}, sort_keys=True) for f in run.figures)


def test_two_workers_files_merge_to_the_serial_runs_figures(tmp_path, monkeypatch):
    serial, parallel = tmp_path / "serial" / "records.jsonl", tmp_path / "xdist" / "records.jsonl"
    session(serial, R1, monkeypatch)
    session(parallel, R2, monkeypatch, NODES[::2], writer="gw0")
    gw1 = session(parallel, R2, monkeypatch, NODES[1::2], writer="gw1", close=False)
    assert read_run(parallel).unended == ["gw1"]  # one worker still running (or killed): not complete
    gw1.close()
    merged = read_run(parallel)
    assert comparable(merged) == comparable(read_run(serial)) and len(merged.figures) == 4
    assert merged.complete and sorted(merged.ends) == ["gw0", "gw1"] and merged.unmeasured() == []
    copy = tmp_path / "copy" / "records.jsonl"  # FILE alone (no folder beside it) reads the same
    copy.parent.mkdir()
    shutil.copyfile(parallel, copy)
    assert comparable(read_run(copy)) == comparable(merged) and read_run(copy).complete


def test_an_interrupted_session_is_incomplete(tmp_path, monkeypatch):
    records = tmp_path / "records.jsonl"
    writer = session(records, R1, monkeypatch, NODES[:1])
    writer.end(2)  # pytest's exit status after Ctrl-C, from pytest_sessionfinish
    text = build(records, tmp_path / "out").report.read_text()
    assert "**Incomplete run**: interrupted (no end line from main): 3 of 4 planned checks have no figure" in text


def test_old_run_folders_are_pruned_once_idle(tmp_path, monkeypatch):
    records = tmp_path / "records.jsonl"
    ids = [f"202601{day:02d}T000000.000000Z" for day in range(1, 14)]
    for run_id in ids:
        session(records, run_id, monkeypatch, NODES[:1])
    old = time.time() - 7200
    for path in (tmp_path / "records.d").rglob("*.jsonl"):
        os.utime(path, (old, old))
    publish(records, keep=10)
    assert sorted(p.name for p in (tmp_path / "records.d").iterdir()) == ids[-10:]


CONFTEST = """
import pytest
from mmtests.runrecords import finish_run, hand_over_run_id, write_plan

def pytest_collection_finish(session):
    write_plan(session.config, [i.nodeid for i in session.items if "mm" in i.fixturenames])

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    finish_run(session.config, exitstatus)

@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    hand_over_run_id(node)
"""

SUITE = """
import os, signal, pytest

@pytest.mark.parametrize("name", list("abcd"))
def test_top1(mm, name):
    if name == os.environ.get("KILL_AT"):
        os.kill(os.getpid(), signal.SIGKILL)
    mm.records.figure(suite="zero_shot", test_id=f"m/d/{name}", metric="top1", value=0.5, model="m", dataset="d",
                      prompt_set=name)
"""


@pytest.mark.integration  # a whole pytest session: tox -e integration, not the default run
def test_pytest_sessions_serial_xdist_and_killed(pytester, tmp_path, monkeypatch):
    """The plugin end to end: a serial session, the same under xdist (merged: the same figures), then a session
    killed before its first figure, which leaves the serial session's records as they were."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    serial, parallel = tmp_path / "serial" / "records.jsonl", tmp_path / "xdist" / "records.jsonl"
    pytester.runpytest_subprocess(f"--mm-records={serial}", "-p", "no:cacheprovider").assert_outcomes(passed=4)
    pytester.runpytest_subprocess(f"--mm-records={parallel}", "-p", "xdist", "-n", "2",
                                  "-p", "no:cacheprovider").assert_outcomes(passed=4)
    one, two = read_run(serial), read_run(parallel)
    assert comparable(one) == comparable(two) and len(two.figures) == 4
    assert one.complete and two.complete and sorted(two.ends) == ["gw0", "gw1"] and two.unmeasured() == []
    kept = serial.read_bytes()
    monkeypatch.setenv("KILL_AT", "a")
    pytester.runpytest_subprocess(f"--mm-records={serial}", "-p", "no:cacheprovider")
    assert serial.read_bytes() == kept
    again = read_run(serial)
    assert again.run_id == one.run_id and [r.complete for r in again.newer] == [False]


def test_ci_shards_of_one_run_merge_into_one_report(pytester, tmp_path):
    """Each shard job writes its records under the shared --mm-run-id; their folders gathered into one, the
    report reads one run, complete only when every shard wrote (here shard 2 has no check of its own)."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    jobs = {i: tmp_path / f"shard-{i}" / "records.jsonl" for i in (1, 2)}
    for i, records in jobs.items():
        pytester.runpytest_subprocess(f"--mm-records={records}", f"--mm-shard={i}/2", "--mm-run-id=20260105T020000Z",
                                      "-p", "no:cacheprovider")
    gathered = tmp_path / "gathered" / "records.jsonl"
    shutil.copytree(jobs[1].parent / "records.d", gathered.parent / "records.d")
    only_one = build(gathered, tmp_path / "out-1")
    assert only_one.incomplete
    assert "**Incomplete run**: shard(s) 2/2 wrote no records" in only_one.report.read_text()
    shutil.copytree(jobs[2].parent / "records.d", gathered.parent / "records.d", dirs_exist_ok=True)
    run = read_run(gathered)
    assert run.run_id == "20260105T020000Z" and run.shards == {2: {1, 2}} and run.complete
    assert sorted(run.ends) == ["shard1of2-main", "shard2of2-main"] and len(run.figures) == 4
    built = build(gathered, tmp_path / "out")
    assert not built.incomplete and "from 2 shards of 2" in built.report.read_text()


def test_a_run_id_that_cannot_name_a_folder_is_a_usage_error(pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess("--mm-run-id=../x", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--mm-run-id '../x': use letters, digits*"])


def write_run(records, run_id, *lines):
    """A run folder written by hand: the lines a session of the plugin leaves, as JSON."""
    folder = records.parent / "records.d" / run_id
    folder.mkdir(parents=True)
    (folder / "main.jsonl").write_text("".join(json.dumps({"run_id": run_id, "writer": "main", **r}) + "\n"
                                               for r in lines))


def test_a_newer_session_stopped_by_a_usage_error_is_named_and_fails(tmp_path, monkeypatch, capsys):
    records, out = tmp_path / "records.jsonl", tmp_path / "out"
    session(records, R1, monkeypatch)
    write_run(records, R2, {"kind": "plan", "test_ids": []},
              {"kind": "end", "exitstatus": 4, "error": "mmtests matrix error:\n/m.toml:\n  [[zero_shot]] #1: bad"})
    built = build(records, out)
    text = built.report.read_text()
    assert text.startswith(f"# mmtests report: {R1}\n")
    assert (f"**This report shows run {R1}, not the newer run {R2}**: that run recorded no figure; its session "
            "ended: usage error (exit status 4): mmtests matrix error: /m.toml: [[zero_shot]] #1: bad.") in text
    assert built.measured_nothing and not built.incomplete
    assert main(["--records", str(records), "--out", str(out)]) == 0
    assert main(["--records", str(records), "--out", str(out), "--fail-on-failure"]) == 1
    assert (f"mmtests.report: the newest session, run {R2}, recorded no figure: usage error (exit status 4): "
            f"mmtests matrix error: /m.toml: [[zero_shot]] #1: bad; this report shows the earlier run {R1}"
            ) in capsys.readouterr().err


def test_a_newer_session_that_selected_no_check_is_named_and_fails(tmp_path, monkeypatch):
    records, out = tmp_path / "records.jsonl", tmp_path / "out"
    session(records, R1, monkeypatch)
    write_run(records, R2, {"kind": "plan", "test_ids": []}, {"kind": "end", "exitstatus": 5})
    text = build(records, out).report.read_text()
    assert f"not the newer run {R2}**: that run recorded no figure; its session ended: no checks selected (exit " \
           "status 5" in text
    assert main(["--records", str(records), "--out", str(out), "--fail-on-failure"]) == 1
    write_run(records, R3, {"kind": "plan", "test_ids": []}, {"kind": "run", "error": "nothing matched -k"},
              {"kind": "end", "exitstatus": 5})  # the error may come in the run line
    assert f"not the newer run {R3}**: that run recorded no figure; its session ended: no checks selected (exit " \
           "status 5: pytest collected no test; a -k, -m or path that matches none?): nothing matched -k." \
           in build(records, out).report.read_text()


def test_a_session_that_crashed_with_an_internal_error_is_incomplete(tmp_path, monkeypatch, capsys):
    records, out = tmp_path / "records.jsonl", tmp_path / "out"
    writer = session(records, R1, monkeypatch, NODES[:1], close=False)
    writer.end(3)  # pytest's INTERNALERROR: the session still ends, with exit status 3
    writer.close()
    built = build(records, out)
    text = built.report.read_text()
    assert ("**Incomplete run**: crashed: pytest internal error (exit status 3), in main: 3 of 4 planned checks "
            "have no figure") in text
    assert built.incomplete and "this run did not finish: it is not added to the history" in text
    assert main(["--records", str(records), "--out", str(out), "--fail-on-failure"]) == 1
    assert "the run did not finish" in capsys.readouterr().err


def test_a_newest_session_that_crashed_before_any_figure_fails(tmp_path, monkeypatch, capsys):
    records, out = tmp_path / "records.jsonl", tmp_path / "out"
    write_run(records, R1, {"kind": "run", "environment": ENV}, {"kind": "plan", "test_ids": NODES},
              {"kind": "end", "exitstatus": 3})
    assert "**Incomplete run**: crashed: pytest internal error (exit status 3), in main: 4 of 4" in \
        build(records, out).report.read_text()
    assert main(["--records", str(records), "--out", str(out), "--fail-on-failure"]) == 1
    assert f"mmtests.report: run {R1} recorded no figure: crashed: pytest internal error (exit status 3)" in \
        capsys.readouterr().err


def test_exit_status_1_and_5_with_figures_are_normal_ends(tmp_path, monkeypatch):
    for status in (0, 1, 5):
        records = tmp_path / str(status) / "records.jsonl"
        writer = session(records, R1, monkeypatch, close=False)
        writer.end(status)
        writer.close()
        built = build(records, tmp_path / str(status) / "out")
        assert not built.incomplete and not built.measured_nothing
        assert "Complete: every writer of the run (main) recorded its end" in built.report.read_text()


def test_a_session_that_ends_in_an_internal_error_after_its_end_line_says_so(tmp_path, monkeypatch):
    """The `mm` fixture writes the end line at teardown; pytest's exit status 3 (INTERNALERROR) comes after it
    and is written too, so the report does not call the run complete."""
    records = tmp_path / "records.jsonl"
    writer = session(records, R1, monkeypatch, NODES, close=False)
    writer.end()
    writer.end(1)  # failed tests: a normal end, not written twice
    writer.end(3)
    writer.close()
    run = read_run(records)
    assert [e.get("exitstatus") for e in run.ends["main"]] == [None, 3]
    assert run.complete is False
