"""Sessions that share a records path or a run id are never merged into one run without a word: each session
writes its own file and names itself; a run folder holding sessions that are neither one session's xdist workers
nor shards of one CI run is kept apart (one session's figures shown, never paired with another's) and named."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mmtests.figures.record_files import merged, writer_files
from mmtests.figures.record_reader import read_run
from mmtests.figures.record_writer import RecordWriter
from mmtests.report.__main__ import build, main

RUN = "20260105T020000Z"
SESSION = """
import os, sys, time
from mmtests.figures.record_writer import RecordWriter
records, run_id, value, go = sys.argv[1], sys.argv[2] or None, float(sys.argv[3]), sys.argv[4]
while not os.path.exists(go):  # both start writing together
    time.sleep(0.005)
writer = RecordWriter(records, {"device": "cpu"}, run_id=run_id)
nodes = [f"suite.py::test_top1[m/d/{p}]" for p in "abcdef"]
writer.plan(nodes)
for node in nodes:
    os.environ["PYTEST_CURRENT_TEST"] = node + " (call)"
    writer.figure(suite="zero_shot", test_id=node.split("[")[1][:-1], metric="top1", value=value, model="m",
                  dataset="d", prompt_set=node[-2])
    time.sleep(0.02)  # the two sessions' figures interleave
writer.close()
"""


def two_sessions_at_once(records: Path, run_ids: tuple[str, str]) -> None:
    go = records.parent / "go"
    procs = [subprocess.Popen([sys.executable, "-c", SESSION, str(records), run_id, str(value), str(go)])
             for run_id, value in zip(run_ids, (0.25, 0.75), strict=True)]
    go.parent.mkdir(parents=True, exist_ok=True)
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]


def test_two_sessions_with_one_run_id_are_kept_apart_and_named(tmp_path, capsys):
    records, out = tmp_path / "reports" / "records.jsonl", tmp_path / "out"
    two_sessions_at_once(records, (RUN, RUN))
    files = writer_files(records.parent / "records.d" / RUN)
    assert len(files) == 2 and files[0].name == "main.jsonl"  # the second session took `main-<its session id>`
    sessions = [json.loads(f.read_text().splitlines()[0])["session"] for f in files]
    run = read_run(records)
    assert len(run.figures) == 6 and len({f["value"] for f in run.figures}) == 1  # one session's, never paired
    assert run.apart and all(s in run.apart for s in sessions) and run.complete
    text = build(records, out).report.read_text()
    assert "**Sessions kept apart**: run 20260105T020000Z was written by 2 pytest sessions" in text
    assert all(s in text for s in sessions)
    assert main(["--records", str(records), "--out", str(out), "--fail-on-failure"]) == 1
    assert "neither shards of one CI run nor xdist workers of one session" in capsys.readouterr().err
    merged_copy = tmp_path / "copy" / "records.jsonl"  # FILE as published: one session, and read alone, the same
    merged_copy.parent.mkdir()
    merged_copy.write_bytes(records.read_bytes())
    assert sorted(f["value"] for f in read_run(merged_copy).figures) == sorted(f["value"] for f in run.figures)
    merged_copy.write_bytes(merged(files))  # both sessions' files in one copy: still kept apart, still named
    again = read_run(merged_copy)
    assert len({f["value"] for f in again.figures}) == 1 and len(again.figures) == 6 and again.apart


def test_two_sessions_on_one_records_path_name_each_other(tmp_path, capsys):
    records, out = tmp_path / "reports" / "records.jsonl", tmp_path / "out"
    two_sessions_at_once(records, ("", ""))
    older, newer = sorted(p.name for p in (records.parent / "records.d").iterdir())
    run = read_run(records)
    assert run.run_id == newer and [r.run_id for r in run.overlapping] == [older] and not run.apart
    assert json.loads(records.read_text().splitlines()[0])["run_id"] == newer  # FILE: the newest run, whole
    text = build(records, out).report.read_text()
    assert f"**Another session wrote to these records at the same time**: run {older} (6 figures)" in text
    assert f"python -m mmtests.report --run {older}" in text
    assert main(["--records", str(records), "--out", str(out)]) == 0
    assert f"run(s) {older}, not in this report" in capsys.readouterr().err
    assert main(["--records", str(records), "--out", str(out), "--run", older]) == 0
    assert (out / older / "report.md").read_text().startswith(f"# mmtests report: {older}\n")
    assert (out / "history" / f"{older}.json").is_file() and (out / "history" / f"{newer}.json").is_file()


# A run folder: sessions (0-2), each with its writers (xdist worker names) and optionally one shard of 2 or 3.
LAYOUTS = st.lists(st.tuples(st.lists(st.sampled_from(["main", "gw0", "gw1"]), min_size=1, max_size=2, unique=True),
                             st.sampled_from([None, "1/2", "2/2", "1/3", "3/3"])), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(LAYOUTS)
def test_a_run_merges_sessions_only_as_shards_or_one_sessions_workers(layout):
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "records.jsonl"
        for number, (writers, shard) in enumerate(layout):
            for writer in writers:
                w = RecordWriter(records, {"device": "cpu"}, run_id=RUN, session=f"s{number}",
                                 writer=f"shard{shard.replace('/', 'of')}-{writer}" if shard else writer, shard=shard)
                w.figure(suite="custom", test_id=writer, metric="session", value=number)
                w.close()
        one_run = len(layout) == 1 or (all(s for _, s in layout) and len({s for _, s in layout}) == len(layout))
        for copy in (False, True):  # the folder, and FILE alone (the published copy of every file merged)
            if copy:
                for folder in (Path(tmp) / "records.d").iterdir():
                    (Path(tmp) / "all.jsonl").write_bytes(merged(writer_files(folder)))
            run = read_run(Path(tmp) / "all.jsonl" if copy else records)
            values = {f["value"] for f in run.figures}
            assert (run.apart is None) == one_run
            if one_run:
                assert len(run.figures) == sum(len(w) for w, _ in layout)
            else:  # one session's figures, all of them; every session named
                assert len(values) == 1 and len(run.figures) == len(layout[values.pop()][0])
                assert all(f"s{n} (" in run.apart for n in range(len(layout)))
