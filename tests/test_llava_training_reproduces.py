"""The training script still reproduces a tiny LLaVA of the committed quality (slow: ~75 minutes on one CPU core)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmtests.config import load_matrix

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_retraining_reaches_the_seed_llava_thresholds(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "fixtures" / "train_tiny_llava.py"), "--out", str(tmp_path)], check=True)
    default = load_matrix(ROOT / "fixtures" / "retrain-thresholds.toml")
    text = default.path.read_text()
    for name in ("tiny-llava", "tiny-llava-stage1"):
        text = text.replace(f'model = "../mmtests/zoo/{name}"', f'model = "{tmp_path / name}"')
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(text)
    records = tmp_path / "records.jsonl"
    result = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "mmtests.suites", "-m", "llava", "-q",
                             "-p", "no:cacheprovider", f"--mm-config={matrix}", f"--mm-records={records}"], cwd=tmp_path)
    failed = [r for r in map(json.loads, records.read_text().splitlines()) if r.get("outcome") == "fail"]
    assert result.returncode == 0 and not failed, f"retrained tiny LLaVA misses thresholds: {failed}"
