"""Every tiny family through the whole suites and benchmarks, as a user runs them (`tox -e families`, in CI):
one session records known-good baselines of all families (`--mm-save-baseline`), a second session of the same
models is gated against them and must agree, and a copy with its vision projection zeroed turns the gate red.

Random weights know nothing: no accuracy floor is set (answers and POPE are measured, not judged), generated
text is not asked to end or to avoid repeats; what is asserted is that nothing crashes, every suite records
figures for every family, batched answers equal one-at-a-time answers and repeat themselves, and the second run
agrees with its known-good self."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from mmtests.tiny_families import build, names

pytestmark = pytest.mark.families
SUITES = ("vlm_answers", "pope", "vlm_stability", "attention")
STRUCTURE = ("batched_equals_single", "same_answer_twice", "non_empty")


def matrix(models: dict[str, str], baselines: Path) -> str:
    entries = "".join(f'[models.{n}]\nbackend = "llava"\nmodel = "{m}"\nbaseline = "{baselines / n}"\n\n'
                      for n, m in models.items())
    listed = ", ".join(f'"{n}"' for n in models)
    return entries + f"""
[datasets.shapes-test]
source = "shapes"
split = "test"
label_column = "shape"

[question_sets.qa]
dataset = "shapes-test"
questions = "shapes"
images = 2
max_new_tokens = 6

[[answers]]
question_set = "qa"
models = [{listed}]

[[pope]]
question_set = "qa"
models = [{listed}]

[[stability]]
question_set = "qa"
models = [{listed}]
single_sample = 4
max_repeated_ngram = 1.0
min_finished = 0.0

[[attention]]
question_set = "qa"
models = [{listed}]
kind = "colour"
samples = 2
on = "all"

[benchmarks]
batch_sizes = [1, 2]
rounds = 1
"""


def figures(records: Path) -> list[dict]:
    return [r for f in sorted(records.parent.glob("records.d/*/*.jsonl")) for line in f.read_text().splitlines()
            if (r := json.loads(line)).get("kind") == "figure"]


def run(pytester, config: Path, records: Path, *args):
    return pytester.runpytest_subprocess("--pyargs", "mmtests.suites", f"--mm-config={config}",
                                         f"--mm-records={records}", "-p", "no:cacheprovider", *args)


@pytest.fixture(scope="module")
def families(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("families")
    return {n.replace(".", "-"): build(n, root / n)["model"] for n in names("vlm")}


def test_every_family_through_every_suite_agrees_with_its_baseline(pytester, tmp_path, families):
    baselines = tmp_path / "baselines"
    config = pytester.makefile(".toml", matrix=matrix(families, baselines))
    first = run(pytester, config, tmp_path / "first" / "records.jsonl", "--mm-save-baseline")
    assert "Traceback" not in first.stdout.str()
    recorded = figures(tmp_path / "first" / "records.jsonl")
    for name in families:
        mine = [r for r in recorded if r.get("model") == name or r["test_id"].startswith(f"{name}/")]
        assert {r["suite"] for r in mine} >= set(SUITES), name
        outcomes = {r["metric"]: r["outcome"] for r in mine if r["suite"] == "vlm_stability"}
        assert all(outcomes[m] == "pass" for m in STRUCTURE), (name, outcomes)
        attention = {r["metric"]: r for r in mine if r["suite"] == "attention"}
        # Structure holds for every family (its own mask kind); image share, sink and localization are measured
        # with the boxes placed by the family's geometry (random weights: on every boxed question, no floor).
        assert all(attention[m]["outcome"] == "pass" for m in ("row_sum_error", "causal_leak", "shapes")), \
            (name, {m: (r["outcome"], r.get("reason")) for m, r in attention.items()})
        assert all(attention[m]["value"] is not None for m in ("image_share", "sink_share", "inside_outside",
                                                                "pointing_hit")), (name, attention)
        assert (baselines / name / "outcomes.json").is_file(), name
    second = run(pytester, config, tmp_path / "second" / "records.jsonl")
    assert "Traceback" not in second.stdout.str()
    gated = [r for r in figures(tmp_path / "second" / "records.jsonl")
             if r["metric"] in ("answer_agreement", "first_token_kl", "accuracy_vs_baseline",
                                "inside_outside_vs_baseline", "pointing_vs_baseline", "image_share_vs_baseline")]
    assert {r["metric"] for r in gated} >= {"answer_agreement", "inside_outside_vs_baseline"}, "a gate not recorded"
    assert {r["outcome"] for r in gated} == {"pass"}, [(r["test_id"], r["metric"]) for r in gated
                                                       if r["outcome"] != "pass"]
    # A copy of Qwen2-VL whose vision merger outputs zeros, under the same entry, against the same baseline: red.
    broken = tmp_path / "qwen2-vl-broken"
    broken.mkdir()
    for f in Path(families["qwen2-vl"]).iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(broken / "model.safetensors"))
    zeroed = [k for k in weights if "merger.mlp.2" in k]
    assert zeroed
    save_file({k: v * 0 if k in zeroed else v for k, v in weights.items()}, str(broken / "model.safetensors"),
              metadata={"format": "pt"})
    config = pytester.makefile(".toml", broken=matrix({"qwen2-vl": str(broken)}, baselines))
    run(pytester, config, tmp_path / "broken" / "records.jsonl", "-k", "test_answers_match_baseline")
    red = [r for r in figures(tmp_path / "broken" / "records.jsonl") if r["outcome"] == "fail"]
    assert red, "the zeroed projection passed every gate"


def test_generation_benchmark_runs_for_every_family(pytester, tmp_path, families):
    config = pytester.makefile(".toml", matrix=matrix(families, tmp_path / "unused"))
    result = pytester.runpytest_subprocess("--pyargs", "mmtests.benchmarks", f"--mm-config={config}", "-k", "llava",
                                           "--benchmark-enable", "--benchmark-only", "-p", "no:cacheprovider",
                                           f"--mm-records={tmp_path / 'records.jsonl'}")
    assert "Traceback" not in result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 2 * 2 * len(families) and not outcomes.get("failed"), outcomes
