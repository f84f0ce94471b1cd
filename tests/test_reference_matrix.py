"""The reference matrix (configs/real-models.toml) offline: it loads, every entry is skipped with its reason (never
an error), POPE is scored per set, and LLaVA's POPE suffix is asked as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmtests.config import load_matrix
from mmtests.config.schema import DUAL_ENCODERS
from mmtests.errors import ModelUnavailable
from mmtests.figures.record_reader import read_run
from mmtests.plugin import pope_sets
from mmtests.session.encoders import DualEncoderCache
from mmtests.session.memo import Memo
from mmtests.session.vlms import VLMCache

REAL = Path(__file__).resolve().parents[1] / "configs" / "real-models.toml"
LLAVA_POPE_SUFFIX = "\nAnswer the question using a single word or phrase."


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache: nothing of the matrix is here."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path / "hf"


def test_the_reference_matrix_names_every_family_with_its_published_figures():
    matrix = load_matrix(str(REAL))
    ids = {spec.model for spec in matrix.models.values()}
    for published in ("ViT-B-32", "openai/clip-vit-base-patch32", "google/siglip-base-patch16-224",
                      "google/siglip2-base-patch16-224", "llava-hf/llava-1.5-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf",
                      "llava-hf/llava-onevision-qwen2-7b-ov-hf", "Qwen/Qwen2-VL-2B-Instruct",
                      "Qwen/Qwen2.5-VL-3B-Instruct", "HuggingFaceTB/SmolVLM-Instruct", "HuggingFaceM4/Idefics3-8B-Llama3",
                      "google/paligemma-3b-mix-224", "google/gemma-3-4b-it", "meta-llama/Llama-3.2-11B-Vision-Instruct"):
        assert published in ids, published
    assert {m.pretrained for m in matrix.models.values() if m.model == "ViT-B-32"} == {"openai", "laion2b_s34b_b79k"}
    llava = [c for c in matrix.pope if c.model == "llava15-7b"]
    assert [c.min_f1 for c in llava] == [0.84]  # published 85.9
    assert matrix.question_sets[llava[0].question_set].prompt_suffix == LLAVA_POPE_SUFFIX
    assert pope_sets(matrix.question_sets["pope"]) == ("all", "random", "popular", "adversarial")


def test_offline_every_model_entry_is_unavailable_with_its_reason(empty_hub):
    """Each model, asked for directly (the suites meet the missing datasets first): ModelUnavailable naming it."""
    matrix = load_matrix(str(REAL))
    cpu = torch.device("cpu")
    encoders = DualEncoderCache(matrix, cpu)
    vlms = VLMCache(matrix, cpu, 1, False, Memo(), dataset=encoders.dataset)
    for name, spec in matrix.models.items():
        load = encoders.encoder if spec.backend in DUAL_ENCODERS else vlms.model
        with pytest.raises(ModelUnavailable, match=re.escape(f"[models.{name}]")):
            load(name)


def test_offline_the_suites_skip_every_entry_with_its_reason(empty_hub, tmp_path):
    records = tmp_path / "records.jsonl"
    result = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "mmtests.suites", "-p", "no:cacheprovider",
                             "-q", "-rs", f"--mm-config={REAL}", f"--mm-records={records}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    summary = out.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ skipped(, \d+ deselected)? in .*", summary.strip("= ")), summary
    reasons = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert reasons and all("is not available here" in line for line in reasons), reasons
    assert "Traceback" not in out + result.stderr
    figures = read_run(records).figures
    assert figures and {f["outcome"] for f in figures} == {"skip"} and all(f.get("reason") for f in figures)
    llava_pope = {f["test_id"] for f in figures if f["suite"] == "pope" and f["test_id"].startswith("llava15-7b/")}
    assert llava_pope == {f"llava15-7b/pope-llava/{s}" for s in ("all", "random", "popular", "adversarial")}


POPE_MATRIX = """
[models.vlm]
backend = "llava"
model = "{zoo}/tiny-llava"
[datasets.pope]
source = "parquet"
path = "{data}"
[question_sets.pope]
dataset = "pope"
questions = "columns"
kind = "pope"
kind_column = "category"
prompt_suffix = {suffix}
[question_sets.shapes]
dataset = "shapes"
questions = "shapes"
images = 4
prompt_suffix = {suffix}
[datasets.shapes]
source = "shapes"
split = "test"
"""


@pytest.mark.parametrize("suffix", [LLAVA_POPE_SUFFIX, " Answer yes or no.", ""])
def test_a_prompt_suffix_is_asked_with_every_question_and_pope_sets_come_from_the_category(tmp_path, suffix):
    import io
    import json

    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature
    from PIL import Image

    from mmtests.data.sources import load_checked

    def png(i):
        out = io.BytesIO()
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(out, "PNG")
        return out.getvalue()

    categories = ["random", "popular", "adversarial"] * 2
    data = tmp_path / "pope.parquet"
    Dataset.from_dict({"image": [{"bytes": png(i), "path": None} for i in range(6)],
                       "question": [f"Is there a cat{i} in the image?" for i in range(6)],
                       "answer": ["yes", "no"] * 3, "category": categories},
                      features=Features({"image": ImageFeature(), "question": Value("string"),
                                         "answer": Value("string"), "category": Value("string")})).to_parquet(str(data))
    zoo = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
    (tmp_path / "m.toml").write_text(POPE_MATRIX.format(zoo=zoo, data=data, suffix=json.dumps(suffix)))
    matrix = load_matrix(str(tmp_path / "m.toml"))
    vlms = VLMCache(matrix, torch.device("cpu"), 4, False, Memo(), dataset=lambda spec: load_checked(spec).dataset)
    pope = vlms.questions("pope")
    assert [q.qa.question for q in pope] == [f"Is there a cat{i} in the image?{suffix}" for i in range(6)]
    assert [q.qa.pope for q in pope] == categories and {q.qa.kind for q in pope} == {"pope"}
    shapes = vlms.questions("shapes")
    assert shapes and all(q.qa.question.endswith(suffix) for q in shapes)
    assert matrix.question_sets["pope"].prompt_suffix == suffix
