"""`pytest --pyargs mmtests.benchmarks --mm-config my.toml` times the user's matrix: its models, at the batch sizes and rounds
its [benchmarks] section names; without the section, every model it has; no random-weight architecture
unless it asks for one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mmtests
from mmtests.config import ConfigError, load_matrix

ROOT = Path(__file__).resolve().parents[1]
ZOO = Path(mmtests.__file__).parent / "zoo"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "my.toml"
    path.write_text(text)
    return path


MY_CLIP = f"""
[models.my-clip]
backend = "open_clip"
model = "local-dir:{ZOO / 'tiny-clip' / 'open_clip'}"
"""


@pytest.mark.integration  # a whole pytest session: tox -e integration, not the default run
def test_a_user_matrix_is_benchmarked(tmp_path):
    matrix = write(tmp_path, MY_CLIP + "\n[benchmarks]\nbatch_sizes = [2, 4]\nrounds = 4\n")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "mmtests" / "benchmarks"), "-p", "no:cacheprovider", "-q",
           f"--mm-config={matrix}", "--benchmark-enable", "--benchmark-only", f"--benchmark-json={out}",
           "-k", "embedding or harness", "-m", "not gpu"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    runs = json.loads(out.read_text())["benchmarks"]
    sweep = {(b["extra_info"]["model"], b["extra_info"]["modality"], b["extra_info"]["batch_size"], b["stats"]["rounds"])
             for b in runs if b["name"].startswith("test_embedding_throughput")}
    assert sweep == {("my-clip", m, b, 4) for m in ("image", "text") for b in (2, 4)}
    harness = [b for b in runs if b["name"].startswith("test_harness")]
    assert [b["extra_info"]["model"] for b in harness] == ["my-clip"]
    assert all(b["extra_info"].get("other_cpu_share") is not None and "spread" in b["extra_info"] for b in runs)


def test_without_a_benchmarks_section_every_model_is_benchmarked_and_no_random_weights(tmp_path):
    matrix = load_matrix(write(tmp_path, MY_CLIP + MY_CLIP.replace("my-clip", "other-clip")))
    assert matrix.benchmarked_models() == ["my-clip", "other-clip"]
    assert matrix.benchmarks.random_architectures == () and matrix.benchmarks.random_vlms == ()


def test_the_default_benchmarks_the_tiny_zoo_and_random_weight_architectures():
    matrix = load_matrix()
    assert matrix.benchmarked_models() == ["tiny-clip", "tiny-llava"]
    assert matrix.benchmarks.random_architectures == ("ViT-B-32", "ViT-L-14")


@pytest.mark.parametrize(("section", "message"), [
    ('models = ["nope"]', "[benchmarks]: model 'nope' in models is not defined (known: my-clip)"),
    ("batch_sizes = [0, 8]", "batch_sizes = [0, 8] must be a list of whole numbers of at least 1"),
    ('batch_sizes = "8"', "batch_sizes = '8' must be a list"),
    ("rounds = 0", "rounds = 0 must be a whole number of at least 1"),
    ('random_vlms = ["llava-reduce"]', "random_vlms names 'llava-reduce' (did you mean 'llava-reduced'?)"),
    ("random_architectures = 3", "random_architectures = 3 must be a list of names"),
    ("batch_size = [8]", "unknown key 'batch_size' (did you mean 'batch_sizes'?)"),
])
def test_benchmarks_section_mistakes_are_named(tmp_path, section, message):
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, MY_CLIP + "\n[benchmarks]\n" + section + "\n"))
    assert message in str(err.value)


def test_benchmarks_as_an_array_of_tables_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\[benchmarks\] must be one table of settings"):
        load_matrix(write(tmp_path, MY_CLIP + "\n[[benchmarks]]\nrounds = 2\n"))


def test_a_user_matrix_without_random_architectures_collects_none(tmp_path):
    matrix = write(tmp_path, MY_CLIP)
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "mmtests" / "benchmarks"), "-p", "no:cacheprovider", "-q", "--collect-only",
           f"--mm-config={matrix}", "--benchmark-enable", "--benchmark-only"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    assert any("my-clip" in i for i in ids) and not any("random-weights" in i or "tiny-" in i for i in ids)
