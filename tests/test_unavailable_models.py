"""Real checkpoints that cannot be had here are skipped with the reason, and the reason is recorded."""

import json

MATRIX = """
[models.vitb32-openai]
backend = "open_clip"
model = "ViT-B-32"
pretrained = "openai"

[models.hf-clip-b32]
backend = "hf_clip"
model = "openai/clip-vit-base-patch32"

[datasets.shapes-mini]
source = "shapes"
split = "test"
label_column = "shape"
size = 8

[prompt_sets.bare]
templates = ["{}"]

[[zero_shot]]
dataset = "shapes-mini"
prompt_set = "bare"
min_top1 = 0.9
"""


def test_missing_checkpoints_skip_with_reason_and_are_recorded(pytester, tmp_path):
    matrix = pytester.makefile(".toml", matrix=MATRIX)
    records = tmp_path / "records.jsonl"
    result = pytester.runpytest_subprocess(
        "--pyargs", "mmtests.suites", f"--mm-config={matrix}", f"--mm-records={records}", "-rs", "-k", "top1",
    )
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([
        "*open_clip model 'ViT-B-32' with pretrained 'openai' could not be loaded here*",
        "*Hugging Face model 'openai/clip-vit-base-patch32' is not available here*",
    ])
    skips = [json.loads(line) for line in records.read_text().splitlines() if '"outcome": "skip"' in line]
    assert {s["test_id"] for s in skips} == {"vitb32-openai/shapes-mini/bare", "hf-clip-b32/shapes-mini/bare"}
