"""Retrieval checks end to end, short of running a model: the matrix entry and its mistakes, the default matrix's
checks and baselines, the report's table, and how the faults run counts what retrieval catches."""

import json
import textwrap

import pytest

from mmtests.config import ConfigError, load_matrix
from mmtests.faults import CATALOGUE, Result
from mmtests.faults.cli import _by_retrieval
from mmtests.figures.baseline_store import Baseline
from mmtests.report.__main__ import build

MATRIX = """
[models.m1]
backend = "open_clip"
model = "ViT-B-32"

[models.v]
backend = "llava"
model = "some/llava"

[datasets.caps]
source = "shapes"
split = "test"
caption_column = "captions"

[datasets.plain]
source = "shapes"
split = "test"

[[retrieval]]
dataset = "caps"
min_image_to_text_r1 = 0.1
min_text_to_image_r10 = 0.4
"""


def write(tmp_path, text):
    path = tmp_path / "matrix.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_retrieval_check_runs_on_every_dual_encoder_with_its_floors(tmp_path):
    (check,) = load_matrix(write(tmp_path, MATRIX)).retrieval
    assert (check.model, check.dataset, check.id) == ("m1", "caps", "m1/caps")
    assert check.floor("image_to_text_r1") == 0.1 and check.floor("text_to_image_r10") == 0.4
    assert check.floor("image_to_text_r5") is None


@pytest.mark.parametrize("change, message", [
    (('dataset = "caps"', 'dataset = "plain"'), r"\[datasets.plain\]: missing 'caption_column' .*\(\"captions\" in the "
                                                r"shapes world\)\), needed by \[\[retrieval\]\] #1"),
    (('dataset = "caps"', 'dataset = "caps"\nmodels = ["v"]'), "retrieval checks need a dual encoder"),
    (("min_image_to_text_r1 = 0.1", "min_image_to_text_r1 = 1.5"), "min_image_to_text_r1"),
    (("min_text_to_image_r10 = 0.4", "min_text_to_image_r20 = 0.4"),
     "unknown key 'min_text_to_image_r20' \\(did you mean 'min_text_to_image_r10'\\?\\)"),
])
def test_retrieval_mistakes_are_named(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_matrix(write(tmp_path, MATRIX.replace(*change)))


def test_the_default_matrix_checks_retrieval_on_both_tiny_clips_against_their_baselines():
    matrix = load_matrix()
    assert {c.model for c in matrix.retrieval} == {"tiny-clip", "tiny-clip-hf"}
    for check in matrix.retrieval:
        baseline = Baseline.load(matrix.models[check.model].baseline, check.model)
        for way in ("image_to_text", "text_to_image"):
            entry = baseline.samples[f"retrieval/{check.dataset}/{way}"]
            assert len(entry["rank"]) == len(entry["score"]) > 1000 and min(entry["rank"]) == 1
        assert baseline.array(f"captions/{check.dataset}").shape[0] == 64


def _fig(metric, value, **kw):
    return {"kind": "figure", "run_id": "R", "suite": "retrieval", "test_id": "m/caps", "model": "m",
            "dataset": "caps", "metric": metric, "value": value, "outcome": "measured", "threshold": None} | kw


def test_the_report_shows_recall_both_ways_and_the_baseline_gates(tmp_path):
    figures = [_fig(f"{way}_r{k}", 0.1 * k / 10 + (0.5 if way == "text_to_image" else 0), chance=0.01 * k, n=100)
               for way in ("image_to_text", "text_to_image") for k in (1, 5, 10)]
    figures[0] |= {"threshold": 0.05, "bound_kind": "min", "outcome": "pass"}
    gates = [_fig("image_to_text_r1_vs_baseline", 0.01, bound_kind="baseline", tolerance=0.0, baseline_value=0.01,
                  outcome="pass"),
             _fig("text_to_image_rank_agreement", 0.9, bound_kind="baseline", tolerance=0.998, baseline_value=1.0,
                  outcome="fail")]
    lines = [{"kind": "run", "run_id": "R", "environment": {"device": "cpu"}}, *figures, *gates]
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(map(json.dumps, lines)) + "\n")
    text = build(records, tmp_path / "out").report.read_text()
    section = text.split("## Image ↔ text retrieval")[1].split("##")[0]
    assert "| i→t R@1 " in section and "| t→i R@10 " in section
    assert "0.010 ✅ (≥ 0.05)" in section and "0.600" in section  # t->i R@10
    assert "❌ text_to_image_rank_agreement" in section


def test_faults_in_the_dual_encoders_files_are_the_ones_retrieval_is_counted_on():
    dual = {f.name for f in CATALOGUE if f.dual_encoder}
    assert "noise-0.3-text-tower" in dual and "mean-std-0.5-hf-only" in dual
    assert "prompt-template-changed" not in dual and "class-order-shuffled" not in dual  # prompts: zero-shot only
    assert not any(f.target == "tiny-llava" for f in CATALOGUE if f.dual_encoder)


def test_retrieval_detection_counts_faults_its_figures_turned_red():
    def result(name, dual, suites):
        return Result(name, "", [], 0, 1.0, suites, dual)

    faults = [result("a", True, {"retrieval": 2, "zero_shot": 1}), result("b", True, {"zero_shot": 3}),
              result("c", False, {"zero_shot": 1})]
    clean = [result("clean", False, {}), result("clean-7", False, {"retrieval": 1})]
    assert _by_retrieval(faults, clean) == {"faults": 2, "caught": 1, "rate": 0.5, "missed": ["b"], "false_alarms": 1}
    assert _by_retrieval([faults[2]], clean) is None
