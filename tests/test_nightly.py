"""The nightly job fails when any step fails, and writes the report anyway."""

import pytest

from mmtests import nightly


@pytest.mark.parametrize(("codes", "failed"), [
    ({}, None), ({"suites": 5}, "suites (5)"), ({"suites": 1, "report": 1}, "suites (1), report (1)"),
    ({"benchmarks": 2}, "benchmarks (2)"), ({"faults": 1}, "faults (1)"),
])
def test_every_step_runs_and_any_failure_fails_the_job(tmp_path, monkeypatch, capsys, codes, failed):
    ran = []

    def call(command):
        name = ("report" if "mmtests.report" in command else "faults" if "mmtests.faults" in command
                else "benchmarks" if "mmtests.benchmarks" in command else "suites")
        ran.append((name, command))
        return codes.get(name, 0)

    monkeypatch.setattr(nightly.subprocess, "call", call)
    code = nightly.main(["--out", str(tmp_path / "r"), "--faults", "-k", "zero_shot", "--mm-config", "my.toml"])
    assert [n for n, _ in ran] == ["suites", "benchmarks", "faults", "report"]
    suites, benchmarks, report = ran[0][1], ran[1][1], ran[3][1]
    assert suites[2:] == ["pytest", "--pyargs", "mmtests.suites", "--mm-records", str(tmp_path / "r" / "records.jsonl"),
                          "--mm-require-all", "-k", "zero_shot", "--mm-config", "my.toml"]
    assert benchmarks[-2:] == ["--mm-config", "my.toml"]  # the benchmarks time the suites' matrix
    assert {"--fail-on-failure", "--fail-on-regression", "--faults"} <= set(report)
    out = capsys.readouterr().out
    assert code == (1 if failed else 0)
    assert (f"FAILED: {failed}" if failed else "all steps passed") in out


def test_detection_power_is_opt_in(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(nightly.subprocess, "call", lambda command: ran.append(command) or 0)
    assert nightly.main(["--out", str(tmp_path)]) == 0
    assert not any("mmtests.faults" in c for c in ran) and "--faults" not in ran[-1]


def test_every_mm_option_reaches_the_benchmarks_but_records_and_shards_stay_the_suites(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(nightly.subprocess, "call", lambda command: ran.append(command) or 0)
    given = ["--mm-config", "my.toml", "--mm-device=cpu", "--mm-batch-size", "8", "--mm-online", "--mm-model", "m",
             "--mm-records", "r.jsonl", "--mm-shard=1/2", "--mm-save-baseline", "-k", "x"]
    assert nightly.main(["--out", str(tmp_path), *given]) == 0
    suites, benchmarks = ran[0], ran[1]
    assert suites[-len(given):] == given
    assert benchmarks[2:5] == ["pytest", "--pyargs", "mmtests.benchmarks"]
    assert benchmarks[-8:] == ["--mm-config", "my.toml", "--mm-device=cpu", "--mm-batch-size", "8", "--mm-online",
                               "--mm-model", "m"]
