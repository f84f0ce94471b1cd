"""The LLaVA suites turn red on deliberately broken copies of the tiny LLaVA:

- projector weights zeroed: the language model receives no image, so answers fall to the priors, and
  localization (measured on correctly answered questions) has nothing to stand on;
- the stage-1-only model (projector aligned, nothing trained end to end) misses the accuracy bar;
- right padding in batched generation: answers of padded prompts change, which only the
  batched-versus-one-at-a-time check sees.
"""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"

MATRIX = """
[models.zeroed-projector]
backend = "llava"
model = "{broken}"

[models.stage1-only]
backend = "llava"
model = "{stage1}"

[models.right-padded]
backend = "llava"
model = "{healthy}"
padding_side = "right"

[datasets.shapes-test]
source = "shapes"
split = "test"
label_column = "shape"

[question_sets.qa]
dataset = "shapes-test"
questions = "shapes"
images = 16

[[answers]]
question_set = "qa"
models = ["zeroed-projector", "stage1-only"]
min_accuracy = {{ colour = 0.9, shape = 0.5 }}

[[pope]]
question_set = "qa"
models = ["zeroed-projector"]
min_f1 = 0.85
max_yes_ratio_gap = 0.1

[[stability]]
question_set = "qa"
models = ["right-padded"]
single_sample = 48

[[attention]]
question_set = "qa"
models = ["zeroed-projector"]
kind = "colour"
samples = 8
min_inside_outside = 1.5
"""


@pytest.fixture(scope="module")
def broken_copy(tmp_path_factory):
    healthy = ZOO / "tiny-llava"
    if not (healthy / "model.safetensors").is_file():
        pytest.skip(f"{healthy} has no weights; train them with fixtures/train_tiny_llava.py")
    out = tmp_path_factory.mktemp("zeroed-projector")
    for f in healthy.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            (out / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(healthy / "model.safetensors"))
    zeroed = [k for k in weights if "multi_modal_projector" in k]
    assert zeroed, "no projector weights found to zero"
    for k in zeroed:
        weights[k] = weights[k] * 0
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return healthy, out


@pytest.mark.integration  # a whole pytest session: tox -e integration, not the default run
def test_suites_fail_on_broken_copies(pytester, tmp_path, broken_copy):
    healthy, broken = broken_copy
    matrix = pytester.makefile(".toml", matrix=MATRIX.format(broken=broken, healthy=healthy, stage1=ZOO / "tiny-llava-stage1"))
    records = tmp_path / "records.jsonl"
    result = pytester.runpytest_subprocess("--pyargs", "mmtests.suites", f"--mm-config={matrix}",
                                           f"--mm-records={records}", "-m", "llava", "-p", "no:cacheprovider")
    outcomes = {}
    for line in records.read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "figure":
            outcomes[(r["test_id"], r["metric"])] = r["outcome"]
    # Zeroed projector: colour and shape answers, POPE and localization fail.
    assert outcomes[("zeroed-projector/qa/colour", "accuracy")] == "fail"
    assert outcomes[("zeroed-projector/qa/shape", "accuracy")] == "fail"
    assert "fail" in {outcomes[(f"zeroed-projector/qa/{s}", "f1")] for s in ("random", "popular", "adversarial")} | {
        outcomes[(f"zeroed-projector/qa/{s}", "yes_ratio_gap")] for s in ("random", "popular", "adversarial")}
    # Localization is measured on correctly answered questions: a model that cannot answer cannot pass it.
    assert "fail" in {outcomes.get(("zeroed-projector/qa/colour", m)) for m in ("answered_for_attention", "inside_outside")}
    assert outcomes[("stage1-only/qa/colour", "accuracy")] == "fail"
    # Attention stays a well-formed causal softmax: those properties do not depend on the weights.
    assert outcomes[("zeroed-projector/qa/colour", "row_sum_error")] == "pass"
    assert outcomes[("zeroed-projector/qa/colour", "causal_leak")] == "pass"
    # Right padding: greedy runs repeat themselves, but batched answers differ from one-at-a-time ones.
    assert outcomes[("right-padded/qa", "same_answer_twice")] == "pass"
    assert outcomes[("right-padded/qa", "batched_equals_single")] == "fail"
    result.stdout.fnmatch_lines(["*FAILED*test_batched_equals_one_at_a_time*right-padded*"])
