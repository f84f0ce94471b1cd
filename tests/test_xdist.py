"""pytest-xdist gives the records of a serial run: the same figures, values and outcomes, merged from
the workers' files into one run (models grouped per worker with --dist loadgroup)."""

import json
import os
import subprocess
import sys

import pytest


def _figures(records):
    out = set()
    for line in records.read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "figure":
            out.add((r["test_id"], r["metric"], json.dumps(r["value"]), r["outcome"]))
    return out


@pytest.mark.integration  # a whole pytest session: tox -e integration, not the default run
def test_two_workers_record_what_a_serial_run_records(tmp_path):
    runs = {}
    for name, extra in (("serial", []), ("xdist", ["-n", "2", "--dist", "loadgroup"])):
        records = tmp_path / name / "records.jsonl"
        cmd = [sys.executable, "-m", "pytest", "--pyargs", "mmtests.suites", "-q", "-p", "no:cacheprovider",
               "-m", "clip", "--mm-model", "tiny-clip", "--mm-model", "tiny-clip-hf", "-k", "shapes-test/ and (bare or big)",
               f"--mm-records={records}", *extra]
        # One thread per process in both runs: float sums then add up in the same order (a serial run on two
        # threads differs from one-thread workers in the last bits of probabilities, not in any outcome).
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stdout[-2000:]
        runs[name] = _figures(records)
    assert runs["serial"] and runs["xdist"] == runs["serial"]
    # One run, written by two workers: the report reads it as complete.
    folders = list((tmp_path / "xdist" / "records.d").iterdir())
    assert len(folders) == 1 and sorted(p.name for p in folders[0].glob("gw?.jsonl")) == ["gw0.jsonl", "gw1.jsonl"]
