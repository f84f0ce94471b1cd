"""The `mmtests` command: subcommands with their help and exit statuses, `init` writing a matrix that reads back,
`run` handing pytest the mm options and the args after `--`, `compare` pairing two runs sample by sample."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmtests import cli
from mmtests.config import ConfigError, load_matrix
from mmtests.figures.paired import binomial_tail
from mmtests.report.__main__ import main as report_main

ZOO = Path(__file__).parents[1] / "mmtests" / "zoo"
COMMANDS = ("init", "run", "bench", "nightly", "report", "faults", "compare")


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert all(f"\n    {name} " in out for name in COMMANDS)


@pytest.mark.parametrize("command", ["init", "run", "bench", "nightly", "compare", "report"])
def test_each_subcommands_help_says_what_it_does_and_its_exit_statuses(capsys, command):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: mmtests {command}" in out and "exit status" in out and "\n  0  " in out


def test_every_report_option_has_help(capsys):
    with pytest.raises(SystemExit):
        report_main(["--help"])
    out = capsys.readouterr().out
    options = [line.split()[0].rstrip(",") for line in out.splitlines() if line.startswith("  --")]
    assert "--fail-on-regression" in options and "--records" in options and "--out" in options
    for line in out.splitlines():
        if line.startswith("  --"):  # an option with no help has nothing after its metavar, nor a next line
            following = out.splitlines()[out.splitlines().index(line) + 1]
            assert len(line.split()) > 2 or following.startswith(" " * 10), f"no help: {line}"
    assert "  2  usage error, or no records" in out and "  3  --fail-on-regression" in out


@pytest.mark.parametrize(("folder", "backend", "checks"), [
    ("tiny-clip/open_clip", "open_clip", "zero_shot"),
    ("tiny-clip/hf", "hf_clip", "zero_shot"),
    ("tiny-llava", "llava", "answers"),
])
def test_init_writes_a_matrix_of_the_models_family_that_reads_back(tmp_path, monkeypatch, capsys, folder, backend, checks):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", str(ZOO / folder)]) == 0
    matrix = load_matrix(tmp_path / "mmtests.toml")
    [spec] = matrix.models.values()
    assert spec.backend == backend
    assert getattr(matrix, checks) and not matrix.unchecked_models()
    assert "next: mmtests run --mm-config mmtests.toml" in capsys.readouterr().out


def test_init_refuses_to_overwrite_without_force(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mmtests.toml").write_text("# mine\n")
    assert cli.main(["init", str(ZOO / "tiny-clip" / "open_clip")]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "mmtests.toml").read_text() == "# mine\n"
    assert cli.main(["init", str(ZOO / "tiny-clip" / "open_clip"), "--force", "--name", "mine"]) == 0
    assert list(load_matrix(tmp_path / "mmtests.toml").models) == ["mine"]


def test_init_of_a_folder_that_holds_no_model_says_so(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["init", str(tmp_path / "empty"), "--out", str(tmp_path / "m.toml")]) == 1
    assert "cannot tell what this folder holds" in capsys.readouterr().err
    assert not (tmp_path / "m.toml").exists()


def test_init_of_a_hub_model_says_the_first_run_needs_online(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "hub.toml"
    assert cli.main(["init", "nobody/not-a-cached-model", "--out", str(out)]) == 0
    assert "mmtests run --mm-config" in capsys.readouterr().out and "--mm-online" in out.read_text()
    assert load_matrix(out).models["not-a-cached-model"].backend == "hf_clip"


def test_run_hands_pytest_the_suites_the_mm_options_and_the_args_after_the_dashes(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command: calls.append(command) or 0)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    matrix = tmp_path / "hub.toml"
    matrix.write_text('[models.h]\nbackend = "hf_clip"\nmodel = "nobody/not-cached"\n')
    assert cli.main(["run", "--mm-config", str(matrix), "--mm-device", "cpu", "--mm-model", "h", "--", "-k", "x"]) == 0
    assert calls[0][1:] == ["-m", "pytest", "--pyargs", "mmtests.suites", "--mm-config", str(matrix), "--mm-device",
                            "cpu", "--mm-model", "h", "--mm-records", "reports/records.jsonl", "-k", "x"]
    assert "h are hub models not in the local cache" in capsys.readouterr().err  # said before pytest starts
    assert cli.main(["run", "--mm-config", str(matrix), "--mm-online"]) == 0
    assert "--mm-online" in calls[1] and "not in the local cache" not in capsys.readouterr().err


def _records(tmp_path: Path, name: str, run_id: str, model_correct: dict[str, list[bool]], top1: float) -> Path:
    path = tmp_path / f"{name}.jsonl"
    lines = [{"kind": "run", "run_id": run_id, "environment": {"device": "cpu"}}]
    samples = []
    for model, correct in model_correct.items():
        lines.append({"kind": "figure", "run_id": run_id, "suite": "zero_shot", "test_id": f"{model}/d/big",
                      "metric": "top1", "value": top1, "threshold": None, "outcome": "measured", "model": model,
                      "dataset": "d", "prompt_set": "big"})
        samples.append({"run_id": run_id, "model": model, "key": "zero_shot/d/big",
                        "samples": {"digest": "abc", "correct": correct}})
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / f"{name}-samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    return path


def test_compare_two_runs_pairs_the_samples_with_an_exact_mcnemar_p(tmp_path, capsys):
    first = _records(tmp_path, "a", "20260101T000000Z", {"m": [True] * 20}, 0.9)
    second = _records(tmp_path, "b", "20260102T000000Z", {"m": [False] * 9 + [True] * 11}, 0.8)
    assert cli.main(["compare", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("m/zero_shot/d/big")).split()
    assert row[1:] == ["20", "1", "0.55", "-0.45", "0", "9", f"{2 * binomial_tail(9, 9):.4g}"]
    assert "d/big top1" in out and "-0.1" in out


def test_compare_two_models_of_one_run(tmp_path, capsys):
    records = _records(tmp_path, "a", "20260101T000000Z", {"m1": [True, False] * 5, "m2": [True] * 10}, 0.9)
    assert cli.main(["compare", str(records), "--models", "m1", "m2"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("zero_shot/d/big")).split()
    assert row[1:5] == ["10", "0.5", "1", "0.5"]


def test_compare_with_nothing_in_common_or_no_records_is_exit_2(tmp_path, capsys):
    first = _records(tmp_path, "a", "20260101T000000Z", {"m": [True]}, 0.9)
    other = _records(tmp_path, "b", "20260102T000000Z", {"x": [True]}, 0.9)
    assert cli.main(["compare", str(first), str(other)]) == 2
    assert "nothing to compare" in capsys.readouterr().out
    assert cli.main(["compare", str(first), str(tmp_path / "none.jsonl")]) == 2


FIVE_LINES = f"""[models.m]
backend = "open_clip"
model = "local-dir:{ZOO / 'tiny-clip' / 'open_clip'}"
[[zero_shot]]
dataset = "shapes-test"
prompt_set = "openai_imagenet"
"""


def test_a_five_line_matrix_names_a_builtin_dataset_and_prompt_set(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(FIVE_LINES)
    matrix = load_matrix(path)
    assert list(matrix.datasets) == ["shapes-test"] and matrix.datasets["shapes-test"].label_column == "shape"
    assert list(matrix.prompt_sets) == ["openai_imagenet"] and len(matrix.prompt_sets["openai_imagenet"].templates) == 80
    path.write_text(FIVE_LINES.replace("openai_imagenet", "photo") + '[prompt_sets.photo]\ntemplates = ["{}!"]\n')
    assert load_matrix(path).prompt_sets["photo"].templates == ("{}!",)  # the file's own entry wins
    path.write_text(FIVE_LINES.replace("openai_imagenet", "fotos"))
    with pytest.raises(ConfigError, match="prompt set 'fotos' in prompt_set is not defined"):
        load_matrix(path)


def test_a_model_with_no_check_is_named_once_not_collected_as_empty_tests(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(FIVE_LINES.split("[[zero_shot]]")[0])
    result = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "mmtests.suites", "--collect-only", "-q",
                             "-p", "no:cacheprovider", f"--mm-config={path}"], cwd=tmp_path, capture_output=True, text=True)
    assert "model(s) 'm' of" in result.stdout and "have no check" in result.stdout
    assert "NOTSET" not in result.stdout and result.returncode == 5, result.stdout[-2000:]
