"""Installing mmtests changes no other project's tests: its pytest plugin loads in every pytest run of
an environment where it is installed, so it must leave unrelated tests, markers and the process
environment as they are."""

import pytest

pytest_plugins = ["pytester"]

UNRELATED = '''
import os
import sys

import pytest


@pytest.mark.parametrize("device", ["cpu", "gpu-0"])
def test_param_id_mentions_gpu(device):
    assert device


@pytest.mark.gpu
def test_own_gpu_marker():
    """This project's own `gpu` marker means something else here: it must run."""


def test_hub_is_not_put_offline():
    assert "HF_HUB_OFFLINE" not in os.environ and "HF_DATASETS_OFFLINE" not in os.environ


def test_torch_not_imported_by_the_plugin():
    assert "torch" not in sys.modules
'''


@pytest.mark.parametrize("plugin", ["loaded", "disabled"])
def test_unrelated_project_runs_the_same_with_mmtests_installed(pytester, plugin, monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    pytester.makeini("[pytest]\nmarkers =\n    gpu: this project's own marker\n")
    pytester.makepyfile(test_unrelated=UNRELATED)
    # With the plugin loaded, one of its options is passed: the run would fail at once were it not active.
    args = ["-p", "no:cacheprovider", "-p", "no:benchmark"] + (
        ["-p", "no:mmtests"] if plugin == "disabled" else ["--mm-batch-size=3"])
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=5)
