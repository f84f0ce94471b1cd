"""`--mm-save-baseline` on the whole default matrix (issue 15) writes, for every model of it, a complete baseline
folder: outcomes.json and fingerprint.safetensors, with every check key and every fingerprint the committed
baselines of the zoo hold, each readable. (tests/test_baseline_files.py records one model's bare-prompt checks;
this is the whole matrix, every model and suite, as a user's first `mmtests run --mm-save-baseline` would.)"""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from mmtests import faults
from mmtests.config import load_matrix
from mmtests.figures.baseline_store import FINGERPRINT, OUTCOMES, Baseline

ZOO_BASELINES = faults.ZOO / "baselines"
CACHE = os.environ.get("MMTESTS_CACHE") or str(Path.home() / ".cache" / "mmtests")  # read before pytester moves HOME


def _fingerprint_keys(folder: Path) -> set[str]:
    with safe_open(str(folder / FINGERPRINT), "pt") as f:
        return set(f.keys())


@pytest.mark.integration  # the whole default matrix, every model: tox -e integration
def test_saving_baselines_on_the_whole_default_matrix_writes_every_models_folder_complete(pytester, tmp_path,
                                                                                          monkeypatch):
    matrix = faults.apply(faults.Fault("clean", "tiny-clip", "clean"), tmp_path)  # the default, with absolute paths
    models = sorted(m for m, spec in load_matrix(matrix).models.items() if spec.baseline)
    assert len(models) == 4, models
    text = matrix.read_text()
    for model in models:
        committed = f'"{ZOO_BASELINES / model}"'
        assert committed in text, (committed, text)
        text = text.replace(committed, f'"{tmp_path / "saved" / model}"')
    matrix.write_text(text)
    monkeypatch.setenv("MMTESTS_CACHE", CACHE)
    result = pytester.runpytest_inprocess("--pyargs", "mmtests.suites", f"--mm-config={matrix}", "--mm-save-baseline",
                                          "--mm-require-all", f"--mm-records={tmp_path / 'records.jsonl'}", "-p",
                                          "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()[-3000:]
    for model in models:
        saved, committed = tmp_path / "saved" / model, ZOO_BASELINES / model
        assert {p.name for p in saved.iterdir()} == {OUTCOMES, FINGERPRINT}, model
        assert set(json.loads((saved / OUTCOMES).read_text())["samples"]) == \
            set(json.loads((committed / OUTCOMES).read_text())["samples"]), model
        keys = _fingerprint_keys(saved)
        assert keys == _fingerprint_keys(committed), model
        loaded = Baseline.load(saved, model)
        assert loaded.fingerprint_problem is None, (model, loaded.fingerprint_problem)
        for key in keys:
            assert isinstance(loaded.array(key), torch.Tensor), (model, key, loaded.array(key))
