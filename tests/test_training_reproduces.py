"""The training script still reproduces a tiny CLIP of the committed quality (slow: ~12 CPU minutes)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmtests.config import load_matrix

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_retraining_reaches_the_seed_thresholds(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "fixtures" / "train_tiny_clip.py"), "--seed", "1", "--out", str(tmp_path)],
                   check=True)
    default = load_matrix(ROOT / "fixtures" / "retrain-thresholds.toml")
    matrix = tmp_path / "matrix.toml"
    text = default.path.read_text()
    text = text.replace('model = "local-dir:../mmtests/zoo/tiny-clip/open_clip"', f'model = "local-dir:{tmp_path / "open_clip"}"')
    text = text.replace('model = "../mmtests/zoo/tiny-clip/hf"', f'model = "{tmp_path / "hf"}"')
    matrix.write_text(text)
    records = tmp_path / "records.jsonl"
    result = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "mmtests.suites", "-q", "-p", "no:cacheprovider",
                             f"--mm-config={matrix}", f"--mm-records={records}"], cwd=tmp_path)
    failed = [r for r in map(json.loads, records.read_text().splitlines()) if r.get("outcome") == "fail"]
    assert result.returncode == 0 and not failed, f"retrained model misses thresholds: {failed}"
